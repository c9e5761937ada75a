"""Running actors: a pool of sandboxed instances per actor, fed by one queue subscription.

Each call takes a free instance, runs the guest on a worker thread (wasmtime releases the GIL), and
gives the instance back; an instance that trapped or ran past its deadline is thrown away and a fresh
one takes its place, so one bad request never poisons the next.

A guest that cannot call out (`WapcModule.pure`: no host calls, no WASI) and whose recent calls were
short (`Limits.inline_us`) runs on the event loop thread instead: the two thread hand-offs cost more
than such a call, and under load every hand-off also waits for the GIL. It gets `INLINE_DEADLINE_MS`
of compute there; past it, it is stopped and run again on a worker with the whole deadline (it called
nothing, so nobody saw the first run), and the pool goes back to workers until its calls are short again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from waft.claims.actor import ActorClaims
from waft.host.wapc import ActorTrap, GuestError, HostCall, Limits, WapcInstance, WapcModule

log = logging.getLogger("waft.host.actors")

#: Compute an inline run may use before it is stopped and run on a worker instead: what the event loop can lose.
INLINE_DEADLINE_MS = 100
#: Weight of the latest call in a pool's running estimate of its call time.
COST_WEIGHT = 0.2


@dataclass
class Instance:
    wapc: WapcInstance
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    annotations: dict[str, str] = field(default_factory=dict)
    #: time.monotonic() when its last call ended
    last_used: float = 0.0


class ActorPool:
    """All instances of one actor on this host."""

    def __init__(self, module: WapcModule, claims: ActorClaims, image_ref: str, limits: Limits,
                 executor: ThreadPoolExecutor, make_host_call: Callable[[ActorPool], HostCall]) -> None:
        self.module = module
        self.claims = claims
        self.image_ref = image_ref
        self.limits = limits
        self._executor = executor
        self._host_call = make_host_call(self)
        self.instances: list[Instance] = []
        # Free instances and the callers waiting for one. A lock, not an asyncio.Queue, because a guest's
        # host call may take and give back an instance of another local actor from its worker thread
        # (`call_here`), so the event loop is never woken for actor-to-actor calls on one host.
        self._lock = threading.Lock()
        self._free: collections.deque[Instance] = collections.deque()
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[Instance]]] = (
            collections.deque())
        self.subscription: object | None = None
        self.calls = 0
        self.errors = 0
        self.recycled = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # set by `add`, which every instance comes from
        self._sweep: asyncio.TimerHandle | None = None
        self._replacing: set[asyncio.Task[None]] = set()
        self.inline_calls = 0
        #: Recent guest run time in seconds (a running average); None until the first call is measured.
        self.cost_s: float | None = None

    @property
    def public_key(self) -> str:
        return self.claims.subject

    @property
    def count(self) -> int:
        return len(self.instances)

    @property
    def free_count(self) -> int:
        return len(self._free)

    def _new_wapc(self) -> WapcInstance:
        return self.module.instantiate(self._host_call, self.limits,
                                       log=lambda line: log.info("[%s] %s", self.claims.name, line))

    async def add(self, count: int, annotations: dict[str, str] | None = None) -> list[Instance]:
        self._loop = self._loop or asyncio.get_running_loop()
        added = []
        for _ in range(count):
            wapc = await asyncio.get_running_loop().run_in_executor(self._executor, self._new_wapc)
            instance = Instance(wapc, annotations=dict(annotations or {}))
            self.instances.append(instance)
            self._release(instance)
            added.append(instance)
        return added

    async def remove(self, count: int, annotations: dict[str, str] | None = None) -> list[Instance]:
        """Take `count` instances out (0 = all) whose annotations include `annotations`."""
        wanted = annotations or {}
        candidates = [i for i in self.instances if wanted.items() <= i.annotations.items()]
        victims = candidates if count <= 0 else candidates[:count]
        for instance in victims:
            self.instances.remove(instance)
        return victims

    async def call(self, operation: str, payload: bytes, timeout: float) -> tuple[bytes, str]:
        """Run `operation` on a free instance; returns (answer, instance id).

        Raises GuestError (the actor said no), ActorTrap (the instance died), or TimeoutError when no
        instance frees up in time.
        """
        self.calls += 1
        with self._lock:  # a free instance now: no wait_for (in 3.11 it wraps _acquire in a task of its own)
            instance = self._pop_free() if self.instances else None
        if instance is None:
            instance = await asyncio.wait_for(self._acquire(), timeout)
        if self._runs_inline():
            inline_ms = min(INLINE_DEADLINE_MS, self.limits.deadline_ms)
            try:
                answer = self._run(instance, operation, payload, inline_ms)
            except ActorTrap as exc:
                await self.replace(instance)
                if not exc.deadline or inline_ms >= self.limits.deadline_ms:  # a real failure, not our cut-off
                    self.errors += 1
                    raise
                log.info("%s took over %d ms on the event loop; running it on a worker", self.claims.name,
                         INLINE_DEADLINE_MS)
                instance = await asyncio.wait_for(self._acquire(), timeout)
            except GuestError:
                self.errors += 1
                self._release(instance)
                raise
            else:
                self.inline_calls += 1
                await self._finish(instance)
                return answer, instance.instance_id
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._run, instance, operation, payload)
        except ActorTrap:
            self.errors += 1
            await self.replace(instance)
            raise
        except GuestError:
            self.errors += 1
            self._release(instance)
            raise
        await self._finish(instance)
        return answer, instance.instance_id

    def _runs_inline(self) -> bool:
        limit = self.limits.inline_us
        return self.module.pure and limit > 0 and self.cost_s is not None and self.cost_s * 1e6 <= limit

    def _run(self, instance: Instance, operation: str, payload: bytes, deadline_ms: int | None = None) -> bytes:
        """One guest call, on whichever thread, timed into `cost_s`."""
        started = time.perf_counter()
        try:
            return instance.wapc.call(operation, payload, deadline_ms)
        finally:
            spent = time.perf_counter() - started
            self.cost_s = spent if self.cost_s is None else self.cost_s + COST_WEIGHT * (spent - self.cost_s)

    async def _finish(self, instance: Instance) -> None:
        if self._bloated(instance):
            await self.replace(instance)
        else:
            self._release(instance)

    def _bloated(self, instance: Instance) -> bool:
        """Past `recycle_bytes` and to be replaced now: with `recycle_idle_ms` it is only noted here, and
        replaced once it has had no call for that long (`_sweep_idle`)."""
        instance.last_used = time.monotonic()
        size = instance.wapc.memory_size()
        if size <= self.limits.recycle_bytes:
            return False
        if self.limits.recycle_idle_ms:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._schedule_sweep)
            return False
        log.info("recycling an instance of %s: its memory grew to %d bytes (recycle_bytes %d)", self.claims.name,
                 size, self.limits.recycle_bytes)
        self.recycled += 1
        return True

    def _schedule_sweep(self) -> None:
        if self._sweep is None and self._loop is not None and self.instances:
            self._sweep = self._loop.call_later(self.limits.recycle_idle_ms / 1000, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """On the loop: replace every free instance past `recycle_bytes` that has had no call for
        `recycle_idle_ms`; look again later while big ones are in use."""
        self._sweep = None
        idle_s = self.limits.recycle_idle_ms / 1000
        now = time.monotonic()
        big_left = False
        for instance in list(self.instances):
            size = instance.wapc.memory_size()
            if size <= self.limits.recycle_bytes:
                continue
            with self._lock:
                free = instance in self._free and now - instance.last_used >= idle_s
                if free:
                    self._free.remove(instance)
            if not free:
                big_left = True
                continue
            log.info("recycling an idle instance of %s: its memory grew to %d bytes (recycle_bytes %d)",
                     self.claims.name, size, self.limits.recycle_bytes)
            self.recycled += 1
            task = asyncio.ensure_future(self.replace(instance))
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)
        if big_left:
            self._schedule_sweep()

    def call_here(self, operation: str, payload: bytes,
                  on_trap: Callable[[Instance], None]) -> tuple[bytes, str] | None:
        """Run `operation` on this thread if an instance is free right now; None when none is.

        For a guest's call to another actor on the same host: its worker thread is idle until the answer
        comes, so running the callee there saves two thread hand-offs and two event-loop wake-ups. A
        trapped instance is handed to `on_trap` (which replaces it on the event loop).
        """
        with self._lock:
            instance = self._pop_free()
        if instance is None:
            return None
        self.calls += 1
        try:
            answer = self._run(instance, operation, payload)
        except ActorTrap:
            self.errors += 1
            on_trap(instance)
            raise
        except GuestError:
            self.errors += 1
            self._release(instance)
            raise
        if self._bloated(instance):
            on_trap(instance)  # replaced on the event loop, as a trapped one is
        else:
            self._release(instance)
        return answer, instance.instance_id

    def _pop_free(self) -> Instance | None:
        while self._free:
            instance = self._free.popleft()
            if instance in self.instances:  # skip instances removed by a scale-down
                return instance
        return None

    async def _acquire(self) -> Instance:
        while True:
            if not self.instances:
                raise ActorTrap(f"actor {self.claims.name} has no running instances")
            with self._lock:
                instance = self._pop_free()
                if instance is None:
                    waiter: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
                    self._waiters.append((asyncio.get_running_loop(), waiter))
            if instance is not None:
                return instance
            try:
                instance = await waiter
            except asyncio.CancelledError:
                with self._lock:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove((asyncio.get_running_loop(), waiter))
                if waiter.done() and not waiter.cancelled():
                    self._release(waiter.result())  # handed over as we gave up: pass it on
                raise
            if instance in self.instances:
                return instance

    def _release(self, instance: Instance) -> None:
        """Give `instance` back (from any thread): to the longest waiter, else to the free list."""
        if instance not in self.instances:
            return
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if not waiter.done():
                    loop.call_soon_threadsafe(_hand_over, waiter, instance, self)
                    return
            self._free.append(instance)

    async def replace(self, instance: Instance) -> None:
        """Swap an instance for a fresh one: a trapped one (its heap may be half-updated), or one whose memory
        passed `recycle_bytes`."""
        if instance not in self.instances:
            return
        index = self.instances.index(instance)
        try:
            wapc = await asyncio.get_running_loop().run_in_executor(self._executor, self._new_wapc)
        except ActorTrap:
            log.exception("could not replace a trapped instance of %s", self.claims.name)
            self.instances.remove(instance)
            return
        fresh = Instance(wapc, instance.instance_id, instance.annotations)
        self.instances[index] = fresh
        self._release(fresh)
        await asyncio.get_running_loop().run_in_executor(self._executor, instance.wapc.close)

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for task in list(self._replacing):
            task.cancel()
        self.instances.clear()
        sub, self.subscription = self.subscription, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]


def _hand_over(waiter: asyncio.Future[Instance], instance: Instance, pool: ActorPool) -> None:
    """On the waiter's loop: give it the instance, or back to the pool if it stopped waiting meanwhile."""
    if waiter.done():
        pool._release(instance)
    else:
        waiter.set_result(instance)


__all__ = ["ActorPool", "ActorTrap", "GuestError", "Instance"]
