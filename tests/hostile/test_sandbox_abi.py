"""The waPC boundary as a hostile guest meets it: guest calls and imports cross it unchecked (raw i32 slots,
for speed), so every type is checked once up front, and whatever goes wrong inside an import unwinds the
guest as a trap that spends the instance, never a value the guest goes on with.

Guests are hand-written modules (WAT): the smallest thing that tries each case."""

from __future__ import annotations

import threading

import pytest

from waft.host.wapc import ActorTrap, GuestError, HostCallError, Limits, Runtime

HOST_CALL = '(import "wapc" "__host_call" (func $hc (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))'
RESPOND = '(import "wapc" "__guest_response" (func $resp (param i32 i32)))'
ERROR = '(import "wapc" "__guest_error" (func $err (param i32 i32)))'


def _module(imports: str, body: str, data: str = "") -> bytes:
    return (f'(module {imports} (memory (export "memory") 1) {data} '
            f'(func (export "__guest_call") (param i32 i32) (result i32) {body}))').encode()


#: Calls the host with payload "ping" (at 0); answers "after" (at 16) when the host call returns at all.
CALLER = _module(f"{HOST_CALL} {RESPOND}",
                 "(drop (call $hc (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) "
                 "(i32.const 0) (i32.const 4))) (call $resp (i32.const 16) (i32.const 5)) (i32.const 1)",
                 '(data (i32.const 0) "ping") (data (i32.const 16) "after")')


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime()


def test_a_guest_call_of_another_type_is_refused_when_compiled(runtime: Runtime) -> None:
    wrong = (b'(module (memory (export "memory") 1) '
             b'(func (export "__guest_call") (param i32) (result i32) (i32.const 1)))')
    with pytest.raises(ActorTrap, match=r"__guest_call is not a function \(i32, i32\) -> i32"):
        runtime.compile(wrong)
    not_a_function = b'(module (memory (export "memory") 1) (global (export "__guest_call") i32 (i32.const 0)))'
    with pytest.raises(ActorTrap, match="not a waPC actor"):
        runtime.compile(not_a_function)


def test_an_import_declared_with_another_type_does_not_link(runtime: Runtime) -> None:
    wrong = _module('(import "wapc" "__host_call" (func $hc (param i32) (result i32)))',
                    "(call $hc (i32.const 0))")
    with pytest.raises(ActorTrap, match="instantiation failed"):
        runtime.compile(wrong).instantiate(lambda *_: b"", Limits())


def test_a_response_outside_memory_traps_and_spends_the_instance(runtime: Runtime) -> None:
    module = runtime.compile(_module(RESPOND, "(call $resp (i32.const 65530) (i32.const 100)) (i32.const 1)"))
    instance = module.instantiate(lambda *_: b"", Limits())
    with pytest.raises(ActorTrap, match="outside its memory"):
        instance.call("Op", b"")
    with pytest.raises(ActorTrap, match="discarded"):
        instance.call("Op", b"")


def test_a_request_too_large_for_the_guest_memory_traps(runtime: Runtime) -> None:
    asks = _module('(import "wapc" "__guest_request" (func $req (param i32 i32)))',
                   "(call $req (i32.const 0) (i32.const 16)) (i32.const 1)")
    instance = runtime.compile(asks).instantiate(lambda *_: b"", Limits())
    with pytest.raises(ActorTrap, match="outside its memory"):
        instance.call("Op", b"x" * 70_000)  # one wasm page is 65 536 bytes


def test_a_host_error_unwinds_the_guest_where_a_host_call_error_does_not(runtime: Runtime) -> None:
    seen: list[bytes] = []

    def failing(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        seen.append(payload)
        raise RuntimeError("a bug in the host")

    module = runtime.compile(CALLER)
    with pytest.raises(ActorTrap, match="aborted by a host error: RuntimeError: a bug in the host"):
        module.instantiate(failing, Limits()).call("Op", b"")
    assert seen == [b"ping"]  # the guest's payload reached the host; the guest never got to answer

    def refusing(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        raise HostCallError("no such link", kind="not_linked")

    assert module.instantiate(refusing, Limits()).call("Op", b"") == b"after"  # told, and it goes on


def test_guest_errors_and_answers_come_back_whole(runtime: Runtime) -> None:
    fails = _module(ERROR, "(call $err (i32.const 0) (i32.const 6)) (i32.const 0)", '(data (i32.const 0) "no way")')
    with pytest.raises(GuestError, match=r"^no way$"):
        runtime.compile(fails).instantiate(lambda *_: b"", Limits()).call("Op", b"")
    assert runtime.compile(CALLER).instantiate(lambda *_: b"pong", Limits()).call("Op", b"") == b"after"


def test_a_failure_in_one_instance_is_reported_by_that_instance_only(runtime: Runtime) -> None:
    """Instances on different worker threads each get their own import's exception (wasmtime-py keeps the
    last one in a global, which two threads could swap)."""
    module = runtime.compile(CALLER)
    barrier = threading.Barrier(2, timeout=30)
    outcomes: dict[str, str] = {}

    def host(name: str) -> object:
        def call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
            barrier.wait()  # both guests are inside their host call at once
            raise LookupError(name)
        return call

    def run(name: str) -> None:
        instance = module.instantiate(host(name), Limits())  # type: ignore[arg-type]
        try:
            instance.call("Op", b"")
        except ActorTrap as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcomes == {name: f"actor call aborted by a host error: LookupError: {name}"
                        for name in ("first", "second")}
