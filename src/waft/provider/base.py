"""A capability provider: a process that serves one contract to linked actors over the lattice.

Write a subclass, mark handlers with `@operation("Service.Method")`, override the link and health
hooks you need, and end the module with `run(MyProvider)`. The SDK does the rest the way wasmbus-rpc
does: reads HostData from stdin, subscribes to the RPC (queue group `rpc`), link, health and shutdown
subjects, verifies every invocation, and answers within timeouts. When the host's end of stdin
closes, the host is gone, and the provider exits rather than linger as an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft.claims.keys import KeyPair
from waft.config import setting
from waft.lattice import subjects
from waft.lattice.codec import DecodeError
from waft.lattice.connection import connect, server_caught_up
from waft.lattice.health import HealthCheckResponse
from waft.lattice.host_data import HostData, HostDataError
from waft.lattice.rpc import InvocationRejected, LatticeConfig, LatticeRpc, wait_closed
from waft.lattice.types import Invocation, LinkDefinition, WasmCloudEntity
from waft.logs import configure_logging

log = logging.getLogger("waft.provider")

Handler = Callable[[Any, "InvocationContext", bytes], Awaitable[bytes]]
P = TypeVar("P", bound="Provider")


class ProviderError(Exception):
    """An expected failure of an operation; its message goes back to the calling actor as-is."""


@dataclass(frozen=True)
class InvocationContext:
    """Who called: the actor and its link, for handlers that keep per-actor state."""

    actor_id: str
    operation: str
    link: LinkDefinition | None
    invocation_id: str


def operation(name: str) -> Callable[[Handler], Handler]:
    """Mark a coroutine method as the handler of `name` (e.g. `MlInference.Predict`)."""

    def mark(func: Handler) -> Handler:
        func.__waft_operation__ = name  # type: ignore[attr-defined]
        return func

    return mark


class Provider:
    #: The capability contract this provider serves, e.g. `wasmcloud:httpserver`.
    contract_id: ClassVar[str] = ""
    #: How many invocations run at once; further ones queue in NATS, not in memory.
    max_concurrency: ClassVar[int] = 64

    def __init__(self, host_data: HostData) -> None:
        self.host_data = host_data
        self.links: dict[str, LinkDefinition] = {}
        #: Links that were put but refused, by actor: reported through health.
        self.link_errors: dict[str, str] = {}
        self.nc: NATS | None = None
        self.rpc: LatticeRpc | None = None
        self._handlers: dict[str, Callable[[InvocationContext, bytes], Awaitable[bytes]]] = {}
        for attr in dir(type(self)):
            func = getattr(type(self), attr, None)
            name = getattr(func, "__waft_operation__", None)
            if name:
                self._handlers[name] = getattr(self, attr)
        self._stopping = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._slots = asyncio.Semaphore(self.max_concurrency)

    # ----------------------------------------------------------------------------- hooks to override
    async def on_start(self) -> None:
        """Called once connected, before any link is delivered."""

    async def put_link(self, link: LinkDefinition) -> None:
        """Accept a link; raise ProviderError to refuse it (the reason is logged and reported)."""

    async def delete_link(self, link: LinkDefinition) -> None:
        """Release whatever the link held (a listener, loaded models)."""

    async def health(self) -> HealthCheckResponse | tuple[bool, str]:
        """`(healthy, message)` as 0.x had it, or a HealthCheckResponse whose `details` say it as fields
        (the mlinference provider lists each model's state there, so no reader parses the message)."""
        return True, "healthy"

    async def on_shutdown(self) -> None:
        """Close what the provider opened; called once, before the connection drains."""

    # ----------------------------------------------------------------------------- provider -> actor
    @property
    def entity(self) -> WasmCloudEntity:
        return WasmCloudEntity.provider(self.host_data.provider_key, self.contract_id, self.host_data.link_name)

    async def call_actor(self, actor_id: str, operation_name: str, payload: bytes,
                         *, timeout: float | None = None) -> bytes:
        """Invoke a linked actor (raises waft.lattice.RpcError when it fails or does not answer)."""
        assert self.rpc is not None, "call_actor before the provider is connected"
        return await self.rpc.invoke(self.entity, WasmCloudEntity.actor(actor_id), operation_name, payload,
                                     timeout=timeout)

    # ----------------------------------------------------------------------------- plumbing
    async def serve(self) -> None:
        data = self.host_data
        prefix, key, link = data.lattice_rpc_prefix, data.provider_key, data.link_name
        # the provider user's seed, when the host has one: it cannot publish control commands
        self.nc = await connect(data.nats_url, data.lattice_rpc_user_seed or None,
                                name=f"provider {self.contract_id} {link}")
        cluster = KeyPair.from_seed(data.invocation_seed)
        self.rpc = LatticeRpc(self.nc, LatticeConfig(prefix, cluster, data.host_id, data.cluster_issuers,
                                                     data.default_rpc_timeout_ms / 1000))
        await self.on_start()
        for ld in data.link_definitions:
            await self._apply_link_put(ld)
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            subs = [
                await self.nc.subscribe(subjects.provider_rpc(prefix, key, link), queue="rpc", cb=self._on_rpc),
                await self.nc.subscribe(subjects.provider_linkdefs_put(prefix, key, link), cb=self._on_link_put),
                await self.nc.subscribe(subjects.provider_linkdefs_del(prefix, key, link), cb=self._on_link_del),
                await self.nc.subscribe(subjects.provider_health(prefix, key, link), cb=self._on_health),
                await self.nc.subscribe(subjects.provider_shutdown(prefix, key, link), cb=self._on_shutdown),
            ]
            await server_caught_up(self.nc)
            log.info("provider %s ready on link %s", self.contract_id, link)
            await self._stopping.wait()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        await self.on_shutdown()
        await wait_closed(self.nc)

    def stop(self) -> None:
        self._stopping.set()

    async def _on_rpc(self, msg: Msg) -> None:
        assert self._tasks is not None
        self._tasks.create_task(self._handle_rpc(msg))

    async def _handle_rpc(self, msg: Msg) -> None:
        assert self.rpc is not None
        async with self._slots:
            try:
                invocation = await self.rpc.receive(msg.data)
            except InvocationRejected as exc:
                await self.rpc.reject(msg, msg.data, str(exc))
                return
            refusal = self._authorize(invocation)
            if refusal:
                error, kind = refusal
                await self.rpc.respond(msg, invocation.id, error=error, error_kind=kind)
                return
            handler = self._handlers.get(invocation.operation)
            if handler is None:
                await self.rpc.respond(msg, invocation.id, error=(
                    f"unknown operation {invocation.operation!r} for {self.contract_id}; "
                    f"this provider serves {', '.join(sorted(self._handlers)) or 'nothing'}"))
                return
            context = InvocationContext(invocation.origin.public_key, invocation.operation,
                                        self.links.get(invocation.origin.public_key), invocation.id)
            try:
                result = await handler(context, invocation.msg)
            except ProviderError as exc:
                await self.rpc.respond(msg, invocation.id, error=str(exc))
                return
            except DecodeError as exc:
                await self.rpc.respond(msg, invocation.id, error=str(exc))
                return
            except Exception as exc:  # a bug in a handler must not kill the provider
                log.exception("handler for %s failed", invocation.operation)
                await self.rpc.respond(msg, invocation.id, error=f"{type(exc).__name__}: {exc}")
                return
            await self.rpc.respond(msg, invocation.id, result)

    def _authorize(self, invocation: Invocation) -> tuple[str, str] | None:
        """Why the invocation is refused, with its host error kind (`error_kind`); None when it may run."""
        if invocation.target.public_key != self.host_data.provider_key:
            return f"invocation is addressed to {invocation.target.public_key}, not this provider", "failed"
        origin = invocation.origin.public_key
        if invocation.origin.is_actor and origin not in self.links:
            # not linked *yet* as a rule (the put is on its way): the caller may retry, as for no link at all
            return (f"actor {origin} is not linked to {self.contract_id} on link {self.host_data.link_name!r}",
                    "not_linked")
        return None

    async def _on_link_put(self, msg: Msg) -> None:
        try:
            link = LinkDefinition.decode(msg.data)
        except DecodeError as exc:
            log.warning("ignoring malformed link definition: %s", exc)
            return
        await self._apply_link_put(link)

    async def _apply_link_put(self, link: LinkDefinition) -> None:
        existing = self.links.get(link.actor_id)
        if existing is not None:
            if existing.values == link.values:
                return  # wasmbus-rpc ignores duplicate puts too
            await self._apply_link_del(existing)  # changed values: re-link, where 0.x needed del + put
        try:
            await self.put_link(link)
        except ProviderError as exc:
            log.error("link from %s refused: %s", link.actor_id, exc)
            self.link_errors[link.actor_id] = str(exc)
            return
        except Exception as exc:
            log.exception("link from %s failed", link.actor_id)
            self.link_errors[link.actor_id] = f"{type(exc).__name__}: {exc}"
            return
        self.link_errors.pop(link.actor_id, None)
        self.links[link.actor_id] = link

    async def _on_link_del(self, msg: Msg) -> None:
        try:
            link = LinkDefinition.decode(msg.data)
        except DecodeError as exc:
            log.warning("ignoring malformed link deletion: %s", exc)
            return
        self.link_errors.pop(link.actor_id, None)
        existing = self.links.get(link.actor_id)
        if existing is not None:
            await self._apply_link_del(existing)

    async def _apply_link_del(self, link: LinkDefinition) -> None:
        self.links.pop(link.actor_id, None)
        try:
            await self.delete_link(link)
        except Exception:
            log.exception("releasing the link from %s failed", link.actor_id)

    async def _on_health(self, msg: Msg) -> None:
        try:
            report = HealthCheckResponse.of(await asyncio.wait_for(self.health(), 5))
        except Exception as exc:
            report = HealthCheckResponse(False, f"health check failed: {exc}")
        if self.link_errors:
            errors = "; ".join(f"{actor[:8]}…: {err}" for actor, err in self.link_errors.items())
            report = HealthCheckResponse(False, f"{report.message}; link errors: {errors}",
                                         {**report.details, "linkErrors": dict(self.link_errors)})
        if msg.reply:
            await msg.respond(report.encode())

    async def _on_shutdown(self, msg: Msg) -> None:
        requester = ""
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            body = json.loads(msg.data or b"{}")
            requester = body.get("host_id", "") if isinstance(body, dict) else ""
        if requester and requester != self.host_data.host_id:
            return
        if msg.reply:
            await msg.respond(b"shutting down")
        self.stop()


async def _watch_stdin(provider: Provider) -> None:
    """The host holds our stdin open for our whole life; EOF means it is gone."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    provider.stop()


async def _main(provider_cls: type[P]) -> None:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.readline)
    provider = provider_cls(HostData.decode_line(line))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, provider.stop)
    watcher = asyncio.create_task(_watch_stdin(provider))
    try:
        await provider.serve()
    finally:
        watcher.cancel()


def run(provider_cls: type[Provider]) -> None:
    """The `__main__` of a provider package. Logs as the host's were set (`WAFT_LOG_LEVEL`, and
    `WAFT_LOG_FORMAT=json` for one JSON object per line), so a lattice's processes read alike."""
    level = (setting("log_level", "INFO") or "INFO").upper()
    if (setting("log_format", "") or "").lower() == "json":
        configure_logging("json", logging.getLevelName(level))  # basicConfig below then leaves it alone
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s {provider_cls.__name__}: %(message)s")
    try:
        asyncio.run(_main(provider_cls))
    except HostDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # the executor thread blocked in stdin.read() must not keep the process alive
    os._exit(0)
