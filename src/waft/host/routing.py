"""Where a guest's `__host_call` goes: builtins, then a linked provider, then an actor by key or call alias.

The guest runs on a worker thread, which waits for its host call anyway, so what needs no I/O is done
right there: resolving the target (dictionary look-ups), builtins, and a call to an actor on this
host that has a free instance. Only a call that leaves the host (a provider, a remote actor), or one
that must wait for a busy local actor, is handed to the event loop (`_on_loop`).
Actor-to-actor calls to an actor on the same host never touch NATS.
"""

from __future__ import annotations

import _thread
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from waft.errors import WaftError
from waft.host.actors import ActorPool, Instance
from waft.host.builtins import BUILTINS, call_builtin
from waft.host.wapc import HOST_ERROR_KINDS, ActorTrap, GuestError, HostCall, HostCallError
from waft.lattice.rpc import LatticeRpc, RpcError
from waft.lattice.types import LinkDefinition, WasmCloudEntity

#: Runs an invocation on a local actor: (pool, origin, operation, payload) -> (answer, instance id).
InvokeLocal = Callable[[ActorPool, WasmCloudEntity, str, bytes], Awaitable[tuple[bytes, str]]]


class Links(Protocol):
    """What routing reads from the lattice cache."""

    links: dict[tuple[str, str, str], LinkDefinition]

    def find_alias(self, alias: str) -> str | None: ...


def describe_failure(exc: BaseException) -> str:
    """The error text a caller sees for an actor that failed or did not answer."""
    if isinstance(exc, TimeoutError):
        return "actor did not answer in time: all instances are busy"
    return str(exc)


def failure_kind(exc: BaseException) -> str:
    """The host error kind (`HOST_ERROR_KINDS`) of an actor that failed or did not answer, or of a call."""
    if isinstance(exc, TimeoutError) or (isinstance(exc, ActorTrap) and exc.deadline):
        return "timeout"
    kind = getattr(exc, "kind", None)  # HostCallError, RpcError
    return kind if kind in HOST_ERROR_KINDS else "failed"


@dataclass(frozen=True)
class Target:
    """Where one host call goes: a builtin, a linked provider, or an actor by public key."""

    kind: str  # "builtin" | "provider" | "actor"
    entity: WasmCloudEntity | None = None


class HostCallRouter:
    """Routes host calls for every actor of one host on one lattice."""

    def __init__(self, loop: asyncio.AbstractEventLoop, prefix: str, rpc: LatticeRpc, links: Links,
                 actors: dict[str, ActorPool], invoke_local: InvokeLocal, *, wait_s: float,
                 spawn: Callable[[Coroutine[Any, Any, Any]], None]) -> None:
        self.loop = loop
        self.prefix = prefix
        self.rpc = rpc
        self.links = links
        self.actors = actors
        self.invoke_local = invoke_local
        #: How long a worker thread waits for its host call before giving up (the RPC has its own timeout).
        self.wait_s = wait_s
        #: Runs a coroutine in the host's task group (called on the event loop).
        self.spawn = spawn

    def host_call_for(self, pool: ActorPool) -> HostCall:
        """The guest's `__host_call`: runs on the guest's worker thread."""

        def host_call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
            target = self.resolve(pool, binding, namespace)
            if target.kind == "builtin":
                return call_builtin(pool.claims.name, namespace, operation, payload)
            if target.kind == "actor" and target.entity is not None:
                answer = self._call_here(target.entity.public_key, operation, payload)
                if answer is not None:
                    return answer
            try:
                return self._on_loop(self.send(pool, target, operation, payload))
            except HostCallError:
                raise
            except Exception as exc:
                raise HostCallError(f"Host send error {type(exc).__name__}: {exc}", kind=failure_kind(exc)) from None

        return host_call

    def _on_loop(self, work: Coroutine[Any, Any, bytes]) -> bytes:
        """Run `work` on the event loop and block this worker thread until it is done (`wait_s` at most).

        What `run_coroutine_threadsafe(...).result()` does, with a bare lock in place of its concurrent
        Future, Condition and the chaining between the two: in situ 44 -> 38 us to the loop and 30 -> 19 us
        back, on every provider call (`docs/performance.md`)."""
        done = _thread.allocate_lock()
        done.acquire()
        task: list[asyncio.Task[bytes]] = []

        def start() -> None:
            task.append(self.loop.create_task(work))
            task[0].add_done_callback(lambda _: done.release())

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed: the host is stopping
            work.close()
            raise
        if not done.acquire(True, self.wait_s):
            self.loop.call_soon_threadsafe(lambda: task and task[0].cancel())
            raise TimeoutError(f"no answer within {self.wait_s:g} s")
        if task[0].cancelled():
            raise HostCallError("host call cancelled: the host is stopping", kind="failed")
        return task[0].result()

    def resolve(self, pool: ActorPool, binding: str, namespace: str) -> Target:
        """Builtins, then a link for (actor, contract, link name), then an actor by key or call alias."""
        caps = pool.claims.caps
        if namespace in BUILTINS:
            if namespace not in caps:
                raise HostCallError(f"Invocation not authorized: missing capability claim for {namespace}",
                                    kind="denied")
            return Target("builtin")
        link = self.links.links.get((pool.public_key, namespace, binding or "default"))
        if link is not None:
            if namespace not in caps:
                raise HostCallError(f"Invocation not authorized: missing capability claim for {namespace}",
                                    kind="denied")
            return Target("provider", WasmCloudEntity.provider(link.provider_id, link.contract_id, link.link_name))
        if namespace.startswith("M") and len(namespace) == 56:
            target_key: str | None = namespace
        else:
            try:
                target_key = self.links.find_alias(namespace)
            except WaftError as exc:  # two actors claim the alias: refuse rather than pick one
                raise HostCallError(str(exc), kind="failed") from None
        if target_key is None:
            if ":" in namespace:
                if namespace not in caps:
                    raise HostCallError(f"Invocation not authorized: missing capability claim for {namespace}",
                                        kind="denied")
                raise HostCallError(f"Invocation not authorized: missing link definition for {namespace} "
                                    f"on {self.prefix}", kind="not_linked")
            raise HostCallError(f"Call alias not found: {namespace} on {self.prefix}", kind="not_running")
        return Target("actor", WasmCloudEntity.actor(target_key))

    def _call_here(self, public_key: str, operation: str, payload: bytes) -> bytes | None:
        """A same-host actor with a free instance, run on this thread; None when it must be sent instead."""
        local = self.actors.get(public_key)
        if local is None:
            return None
        try:
            done = local.call_here(operation, payload, on_trap=lambda instance: self._replace_soon(local, instance))
        except (GuestError, ActorTrap) as exc:
            raise HostCallError(describe_failure(exc), kind=failure_kind(exc)) from None
        return None if done is None else done[0]

    def _replace_soon(self, pool: ActorPool, instance: Instance) -> None:
        self.loop.call_soon_threadsafe(self.spawn, pool.replace(instance))

    async def send(self, pool: ActorPool, target: Target, operation: str, payload: bytes) -> bytes:
        assert target.entity is not None
        origin = WasmCloudEntity.actor(pool.public_key)
        local = self.actors.get(target.entity.public_key) if target.kind == "actor" else None
        if local is not None:  # same-host actor-to-actor calls skip NATS
            try:
                answer, _ = await self.invoke_local(local, origin, operation, payload)
            except (GuestError, ActorTrap, TimeoutError) as exc:
                raise HostCallError(describe_failure(exc), kind=failure_kind(exc)) from None
            return answer
        try:
            return await self.rpc.invoke(origin, target.entity, operation, payload)
        except RpcError as exc:
            raise HostCallError(str(exc), kind=failure_kind(exc)) from None
