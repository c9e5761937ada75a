"""The waPC guest ABI on wasmtime: one module, many sandboxed instances, one call at a time each.

A waPC call is synchronous inside the guest, but the host routes `__host_call` over NATS with asyncio.
So guest code runs on a worker thread and `host_call` is a plain callable the host supplies; the host
bridges it back onto its event loop. The guest never sees the difference.

Limits: every call gets an epoch deadline (a shared ticker thread advances the engine's epoch), and
every instance gets a memory cap through the store's limiter. A trap of any kind poisons the
instance: the caller gets an `ActorTrap` and must discard it (wasmtime keeps the instance callable
after a trap, but the guest's heap may be half-updated).

WASI: real actors import none of it (reactor model), but a module that does gets wasmtime's WASI with
an empty WasiConfig (no preopened directories, no environment, no arguments, stdin empty, stdout and
stderr discarded; preview 1 has no socket() at all) and, on top of that, the clocks and `poll_oneoff`
answer ENOTCAPABLE: reading the time is a side channel, and a guest sleeping inside a host function
would hold its worker thread past the epoch deadline, which only interrupts wasm code. `random_get`
stays (Rust's std needs it at start-up). tests/limits/test_limits_wasi_lockdown.py shows each refusal.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import wasmtime
from wasmtime import _ffi as ffi  # the C API's unchecked calls, which wasmtime-py wraps only in its slow path

from waft.config import int_setting

#: Both import namespaces a wasmCloud 0.x host offers (wasmcloud-protocol §1.1).
IMPORT_MODULES = ("wapc", "wasmbus")
#: Deadlines are seconds long, so 50 ms of slack is nothing, while each tick wakes a Python thread that
#: must take the GIL: at 5 ms the ticker alone was a fifth of the host's GIL time under load.
EPOCH_TICK_S = 0.05
INIT_EXPORTS = ("_initialize", "start", "wapc_init", "_start")
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
WASI_ENOTCAPABLE = 76
#: WASI preview 1 functions refused even though `define_wasi` would serve them: name -> parameter types.
WASI_REFUSED = {"clock_time_get": "ili", "clock_res_get": "ii", "poll_oneoff": "iiii"}
#: waPC's `__guest_call(operation_len, payload_len) -> i32`; checked once per module, since calls are unchecked.
GUEST_CALL_TYPE = ([wasmtime.ValType.i32()] * 2, [wasmtime.ValType.i32()])

HostCall = Callable[[str, str, str, bytes], bytes]
"""`host_call(binding, namespace, operation, payload)` returns the answer or raises HostCallError."""


#: What a failed host call was, machine-readable: the guest reads `"<kind>: <message>"` from `__host_error`
#: (docs/actors.md, "Calling out"), so it maps kinds, not sentences. `failed` is everything else.
HOST_ERROR_KINDS = ("timeout", "not_running", "not_linked", "denied", "too_large", "failed")


class HostCallError(Exception):
    """Raised by a host_call implementation; the guest gets `"<kind>: <message>"` through `__host_error`.

    kind: `timeout` (the target did not answer in time), `not_running` (nothing serves the target),
    `not_linked` (no link for the contract), `denied` (a claim is missing), `too_large` (the payload cannot
    be carried), `failed` (anything else: the target's own error, a bad request)."""

    def __init__(self, message: str, *, kind: str = "failed") -> None:
        if kind not in HOST_ERROR_KINDS:
            raise ValueError(f"unknown host error kind {kind!r}; known: {', '.join(HOST_ERROR_KINDS)}")
        super().__init__(message)
        self.kind = kind


class _PastWallClock(Exception):
    """Raised inside a host call once the invocation's wall-clock cap has passed: it unwinds the guest."""


class GuestError(Exception):
    """The guest answered with `__guest_error` (it ran fine, the operation failed)."""


class ActorTrap(Exception):
    """The guest trapped, ran past its deadline or could not be instantiated; the instance is spent."""

    def __init__(self, message: str, *, deadline: bool = False) -> None:
        super().__init__(message)
        self.deadline = deadline


@dataclass(frozen=True)
class Limits:
    """Per-instance sandbox limits; every one has a default and a setting (design: Conventions)."""

    memory_bytes: int = 512 * 1024 * 1024  # a 50 MP PNG needs a 256 MiB block (the allocator rounds up)
    deadline_ms: int = 10_000
    #: Wall-clock cap of one invocation, host calls included (each is bounded by the RPC timeout, but a guest
    #: could make them one after another): past it, host calls are refused and the guest stops at once.
    wall_ms: int = 120_000
    #: Entries of all tables together: the memory cap covers linear memory only, and `table.grow` outside
    #: it allocated 128 MiB under a 1 MiB cap. A C actor's function table holds a few hundred entries.
    table_elements: int = 10_000
    #: An instance whose linear memory grew past this is replaced after its call: wasm memory never
    #: shrinks, so one large upload would keep an instance at its high-water mark (264 MiB after one PNG).
    recycle_bytes: int = 128 * 1024 * 1024
    #: An instance past `recycle_bytes` is replaced once it has had no call for this long (0: right after
    #: its call). Under a stream of large inputs, replacing after every call made each next one fault in its
    #: ~130 MiB afresh in a new instance, which cost the other clients' p99 on a small machine.
    recycle_idle_ms: int = 10_000
    #: A module that cannot call out (no `__host_call`, no WASI) whose recent calls took at most this long runs
    #: on the event loop thread instead of a worker (`ActorPool.call`); 0: never.
    inline_us: int = 1000

    #: What one actor instance is: one module, its tables and memories; wasmtime counts them per store.
    INSTANCES_PER_STORE = 1
    TABLES_PER_STORE = 4
    MEMORIES_PER_STORE = 1

    @classmethod
    def from_settings(cls, env: Mapping[str, str] | None = None) -> Limits:
        """`WAFT_ACTOR_MEMORY_BYTES`, `WAFT_ACTOR_DEADLINE_MS`, `WAFT_ACTOR_WALL_MS`, `WAFT_ACTOR_TABLE_ELEMENTS`,
        `WAFT_ACTOR_RECYCLE_BYTES`, `WAFT_ACTOR_RECYCLE_IDLE_MS`, `WAFT_ACTOR_INLINE_US`; defaults above."""
        default = cls()
        return cls(memory_bytes=int_setting("actor_memory_bytes", default.memory_bytes, env=env),
                   deadline_ms=int_setting("actor_deadline_ms", default.deadline_ms, env=env),
                   wall_ms=int_setting("actor_wall_ms", default.wall_ms, env=env),
                   table_elements=int_setting("actor_table_elements", default.table_elements, env=env),
                   recycle_bytes=int_setting("actor_recycle_bytes", default.recycle_bytes, env=env),
                   recycle_idle_ms=max(0, int_setting("actor_recycle_idle_ms", default.recycle_idle_ms, env=env)),
                   inline_us=int_setting("actor_inline_us", default.inline_us, env=env))


class _EpochTicker:
    """One daemon thread per engine advancing its epoch, so deadlines cost guests ~nothing."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        #: Ticks so far (the engine's epoch as we advanced it): instances measure their compute with it.
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="waft-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(EPOCH_TICK_S):
            self._engine.increment_epoch()
            self.ticks += 1

    def stop(self) -> None:
        self._stop.set()


class Runtime:
    """The wasmtime engine shared by all actors of a host, with its epoch ticker."""

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.ticker = _EpochTicker(self.engine)
        #: The longest deadline any instance was given, in ticks: `interrupt_all` must pass it.
        self.max_deadline_ticks = 1

    def compile(self, wasm: bytes) -> WapcModule:
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ActorTrap(f"module does not compile: {_first_line(exc)}") from None
        return WapcModule(self, module)

    def interrupt_all(self) -> None:
        """Make every running guest trap now (host shutdown): advance the epoch past every deadline."""
        for _ in range(self.max_deadline_ticks + 1):
            self.engine.increment_epoch()

    def close(self) -> None:
        """Stop the ticker. Call `interrupt_all` first if guests may still run: without the ticker
        a looping guest would never reach its deadline."""
        self.ticker.stop()


def _first_line(exc: BaseException) -> str:
    """The headline of a wasmtime error; for a trap that is the cause at the end (`wasm trap: …`),
    since the first line is only "error while executing at wasm backtrace:"."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if "Caused by:" in lines:
        return lines[-1]
    return lines[0]


class WapcModule:
    """A compiled actor module; instances are cheap to make from it."""

    def __init__(self, runtime: Runtime, module: wasmtime.Module) -> None:
        self.runtime = runtime
        self.module = module
        exports = {e.name for e in module.exports}
        if "__guest_call" not in exports:
            raise ActorTrap("module does not export __guest_call: not a waPC actor")
        guest_call = next(e.type for e in module.exports if e.name == "__guest_call")
        if not isinstance(guest_call, wasmtime.FuncType) or (guest_call.params, guest_call.results) != GUEST_CALL_TYPE:
            raise ActorTrap("module's __guest_call is not a function (i32, i32) -> i32: not a waPC actor")
        self.api_version_export = "__wasmbus_rpc_version" if "__wasmbus_rpc_version" in exports else None
        self.init_exports = [name for name in INIT_EXPORTS if name in exports]
        self.needs_wasi = any("wasi" in imp.module for imp in module.imports)
        #: Calls nothing outside itself: no host calls, no WASI. Its call is a function of its input (and its
        #: instance's state), so one stopped half-way can be run again elsewhere without anyone seeing it.
        self.pure = not self.needs_wasi and not any(
            imp.name == "__host_call" for imp in module.imports if imp.module in IMPORT_MODULES)

    def instantiate(self, host_call: HostCall, limits: Limits = Limits(),
                    log: Callable[[str], None] | None = None) -> WapcInstance:
        return WapcInstance(self, host_call, limits, log or (lambda line: None))


def _refuse_wasi_clocks(linker: wasmtime.Linker) -> None:
    """Shadow the WASI clocks and `poll_oneoff` (sleeping) with functions that answer ENOTCAPABLE."""
    kinds = {"i": wasmtime.ValType.i32(), "l": wasmtime.ValType.i64()}
    linker.allow_shadowing = True
    for namespace in WASI_MODULES:
        for name, params in WASI_REFUSED.items():
            ty = wasmtime.FuncType([kinds[p] for p in params], [kinds["i"]])
            linker.define_func(namespace, name, ty, lambda *_: WASI_ENOTCAPABLE)
    linker.allow_shadowing = False


_Raw = ffi.wasmtime_val_raw_t
_NO_FINALIZER = ctypes.cast(None, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_RawImport = Callable[..., int | None]
"""An import as `_define_imports` writes it: `(context, *i32 args)`, returning the i32 result or None."""


class WapcInstance:
    """One sandboxed instance. Not thread-safe: the host gives each instance to one call at a time.

    Guest calls and the waPC imports go through wasmtime's *unchecked* C API (raw i32 slots) rather than
    wasmtime-py's `Func.__call__` and its trampoline, which re-read the function type, box every value
    and build a `Caller` on each crossing: 10-30 us per crossing, and one host call from a guest is five
    crossings (`docs/performance.md`). The types are checked once: `__guest_call`'s when the module is
    compiled, the imports' by wasmtime when it links them against the module.
    """

    def __init__(self, module: WapcModule, host_call: HostCall, limits: Limits,
                 log: Callable[[str], None]) -> None:
        self.module = module
        self.limits = limits
        self._host_call = host_call
        self._log = log
        self._operation = b""
        self._payload = b""
        self._guest_response: bytes | None = None
        self._guest_error: bytes | None = None
        self._host_response = b""
        self._host_error = b""
        #: What an import raised past its own handling (it unwinds the guest as a trap): re-raised by `call`.
        self._raised: BaseException | None = None
        self._callbacks: list[object] = []  # the C callbacks must live as long as the store that calls them
        self._call_slots = (_Raw * 2)()
        # The current invocation's compute budget (ticks), where its latest guest segment began, its wall end.
        self._budget, self._segment, self._wall_end = 0, 0, 0.0
        self.store = wasmtime.Store(module.runtime.engine)
        self.store.set_limits(memory_size=limits.memory_bytes, table_elements=limits.table_elements,
                              instances=limits.INSTANCES_PER_STORE, tables=limits.TABLES_PER_STORE,
                              memories=limits.MEMORIES_PER_STORE)
        self.store.set_epoch_deadline(self._ticks(limits.deadline_ms))
        linker = wasmtime.Linker(module.runtime.engine)
        if module.needs_wasi:
            linker.define_wasi()
            self.store.set_wasi(wasmtime.WasiConfig())
            _refuse_wasi_clocks(linker)
        self._define_imports(linker)
        try:
            self.instance = linker.instantiate(self.store, module.module)
            exports = self.instance.exports(self.store)
            self._memory: wasmtime.Memory = exports["memory"]  # type: ignore[assignment]
            self._guest_call: wasmtime.Func = exports["__guest_call"]  # type: ignore[assignment]
            self._memory_ref = ctypes.byref(self._memory._memory)
            self._guest_call_ref = ctypes.byref(self._guest_call._func)
            for name in module.init_exports:
                exports[name](self.store)  # type: ignore[operator]
            self.api_version = 0
            if module.api_version_export:
                self.api_version = int(exports[module.api_version_export](self.store))  # type: ignore[operator]
        except (wasmtime.WasmtimeError, wasmtime.Trap, KeyError) as exc:
            raise ActorTrap(f"instantiation failed: {_first_line(exc)}") from None
        self.spent = False

    def close(self) -> None:
        """Free the store (its linear memory) now, on the calling thread, rather than wherever the last
        reference happens to go: unmapping a few hundred MiB took the event loop's time when that was there."""
        self.spent = True
        self.store.close()

    def memory_size(self) -> int:
        """Bytes of linear memory the guest has now (its high-water mark: wasm memory does not shrink)."""
        return int(self._memory.data_len(self.store))

    def _ticks(self, deadline_ms: int) -> int:
        ticks = max(1, int(deadline_ms / 1000 / EPOCH_TICK_S))
        runtime = self.module.runtime
        runtime.max_deadline_ticks = max(runtime.max_deadline_ticks, ticks)
        return ticks

    # -- memory access: ctypes memmove over the linear memory (re-read the base: it moves on grow)
    def _read(self, context: object, ptr: int, length: int) -> bytes:
        ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF  # wasm32 addresses arrive as signed i32
        if ptr + length > ffi.wasmtime_memory_data_size(context, self._memory_ref):
            raise HostCallError(f"guest pointer {ptr}+{length} is outside its memory")
        base = ctypes.addressof(ffi.wasmtime_memory_data(context, self._memory_ref).contents)
        return ctypes.string_at(base + ptr, length)

    def _write(self, context: object, ptr: int, data: bytes) -> None:
        ptr &= 0xFFFFFFFF  # wasm32 addresses arrive as signed i32
        if ptr + len(data) > ffi.wasmtime_memory_data_size(context, self._memory_ref):
            raise wasmtime.WasmtimeError(f"guest pointer {ptr}+{len(data)} is outside its memory")
        base = ctypes.addressof(ffi.wasmtime_memory_data(context, self._memory_ref).contents)
        ctypes.memmove(base + ptr, data, len(data))

    def _define_imports(self, linker: wasmtime.Linker) -> None:
        i32 = wasmtime.ValType.i32()

        def guest_request(context: object, op_ptr: int, ptr: int) -> None:
            self._write(context, op_ptr, self._operation)
            self._write(context, ptr, self._payload)

        def guest_response(context: object, ptr: int, length: int) -> None:
            self._guest_response = self._read(context, ptr, length)

        def guest_error(context: object, ptr: int, length: int) -> None:
            self._guest_error = self._read(context, ptr, length)

        def host_call(context: object, bd_ptr: int, bd_len: int, ns_ptr: int, ns_len: int,
                      op_ptr: int, op_len: int, ptr: int, length: int) -> int:
            self._host_response = b""
            self._host_error = b""
            ticker = self.module.runtime.ticker
            self._budget -= ticker.ticks - self._segment  # the guest's computing since it last ran
            try:
                if time.monotonic() > self._wall_end:
                    raise _PastWallClock()  # unwinds the guest at once (a HostCallError would let it go on)
                binding = self._read(context, bd_ptr, bd_len).decode("utf-8", "replace")
                namespace = self._read(context, ns_ptr, ns_len).decode("utf-8", "replace")
                operation = self._read(context, op_ptr, op_len).decode("utf-8", "replace")
                payload = self._read(context, ptr, length)
                self._host_response = self._host_call(binding, namespace, operation, payload)
                return 1
            except HostCallError as exc:
                self._host_error = f"{exc.kind}: {exc}".encode()
                return 0
            finally:
                # The deadline bounds the guest's own computing over the whole invocation: waiting on a
                # provider is not counted (the RPC timeout bounds it), but the budget is never refilled,
                # so a guest cannot compute just under the deadline between host calls for ever.
                self._segment = ticker.ticks
                ffi.wasmtime_context_set_epoch_deadline(context, max(1, self._budget))

        def host_response_len(context: object) -> int:
            return len(self._host_response)

        def host_response(context: object, ptr: int) -> None:
            self._write(context, ptr, self._host_response)

        def host_error_len(context: object) -> int:
            return len(self._host_error)

        def host_error(context: object, ptr: int) -> None:
            self._write(context, ptr, self._host_error)

        def console_log(context: object, ptr: int, length: int) -> None:
            self._log(self._read(context, ptr, length).decode("utf-8", "replace"))

        table = {
            "__guest_request": (guest_request, 2, False),
            "__guest_response": (guest_response, 2, False),
            "__guest_error": (guest_error, 2, False),
            "__host_call": (host_call, 8, True),
            "__host_response_len": (host_response_len, 0, True),
            "__host_response": (host_response, 1, False),
            "__host_error_len": (host_error_len, 0, True),
            "__host_error": (host_error, 1, False),
            "__console_log": (console_log, 2, False),
        }
        for name, (func, arity, returns) in table.items():
            ty = wasmtime.FuncType([i32] * arity, [i32] if returns else [])
            callback = ffi.wasmtime_func_unchecked_callback_t(self._unchecked(func, arity, returns))
            self._callbacks.append(callback)
            for namespace in IMPORT_MODULES:
                raw_module, raw_name = namespace.encode(), name.encode()
                error = ffi.wasmtime_linker_define_func_unchecked(
                    linker.ptr(), ctypes.create_string_buffer(raw_module), len(raw_module),
                    ctypes.create_string_buffer(raw_name), len(raw_name), ty.ptr(), callback, None,
                    _NO_FINALIZER)
                if error:
                    raise wasmtime.WasmtimeError._from_ptr(error)

    def _unchecked(self, func: _RawImport, arity: int, returns: bool) -> Callable[..., int]:
        """The C callback of one import: i32 arguments in from the raw slots, the i32 result out to slot 0.

        Anything the import raises becomes a trap that unwinds the guest; `call` re-raises it (a ctypes
        callback must not raise: ctypes would print it and let the guest go on)."""

        def callback(env: object, caller: object, slots: ctypes.Array[_Raw], count: int) -> int:
            try:
                context = ffi.wasmtime_caller_context(caller)
                result = func(context, *[slots[i].i32 for i in range(arity)])
                if returns:
                    slots[0].i32 = result
                return 0
            except BaseException as exc:
                self._raised = exc
                trap = wasmtime.Trap(f"host function raised {type(exc).__name__}")._consume()
                return ctypes.cast(trap, ctypes.c_void_p).value or 0

        return callback

    def _call_guest(self, operation_len: int, payload_len: int) -> int:
        """`__guest_call` through the unchecked API; raises what wasmtime-py's call would (a Trap, a
        WasmtimeError, or the exception an import raised)."""
        slots = self._call_slots
        slots[0].i32, slots[1].i32 = operation_len, payload_len
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self._raised = None
        error = ffi.wasmtime_func_call_unchecked(self.store._context(), self._guest_call_ref, slots, 2,
                                                 ctypes.byref(trap))
        raised, self._raised = self._raised, None
        if error or trap:
            failure = wasmtime.WasmtimeError._from_ptr(error) if error else wasmtime.Trap._from_ptr(trap)
            if raised is not None:
                raise raised from None
            raise failure
        return int(slots[0].i32)

    def call(self, operation: str, payload: bytes, deadline_ms: int | None = None) -> bytes:
        """Run one operation; raise GuestError for a guest-reported failure, ActorTrap for a trap.
        `deadline_ms` replaces the limits' compute deadline for this call (a shorter one for inline runs)."""
        if self.spent:
            raise ActorTrap("instance was discarded after a trap")
        deadline_ms = self.limits.deadline_ms if deadline_ms is None else deadline_ms
        self._operation = operation.encode()
        self._payload = payload
        self._guest_response = None
        self._guest_error = None
        self._budget = self._ticks(deadline_ms)
        self._segment = self.module.runtime.ticker.ticks
        self._wall_end = time.monotonic() + self.limits.wall_ms / 1000
        self.store.set_epoch_deadline(self._budget)
        try:
            result = self._call_guest(len(self._operation), len(payload))
        except wasmtime.Trap as exc:
            self.spent = True
            deadline = exc.trap_code == wasmtime.TrapCode.INTERRUPT
            if deadline:
                raise ActorTrap(f"actor ran past its {deadline_ms} ms deadline", deadline=True) from None
            raise ActorTrap(f"actor trapped: {_first_line(exc)}") from None
        except wasmtime.WasmtimeError as exc:
            self.spent = True
            raise ActorTrap(f"actor failed: {_first_line(exc)}") from None
        except _PastWallClock:
            self.spent = True
            raise ActorTrap(f"actor ran past its {self.limits.wall_ms} ms wall-clock cap (deadline of the whole "
                            "invocation, host calls included)", deadline=True) from None
        except Exception as exc:
            # host_call raised something other than HostCallError: wasmtime unwound the guest mid-call
            # and re-raises it here. The guest's heap is as suspect as after a trap.
            self.spent = True
            raise ActorTrap(f"actor call aborted by a host error: {type(exc).__name__}: {exc}") from exc
        if result == 1:
            return self._guest_response or b""
        message = self._guest_error or b"guest call failed without an error message"
        raise GuestError(message.decode("utf-8", "replace"))
