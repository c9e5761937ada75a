"""A client of the control interface: what `waft ctl`, `waft app` and the dashboard speak through.

Every call is a NATS request with a timeout; `get_hosts` gathers the answers of all hosts until the
timeout passes, as wash does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NATS

from waft.config import without_credentials
from waft.errors import WaftError
from waft.lattice import subjects
from waft.lattice.credentials import host_connect_options, server_urls
from waft.lattice.events import Event, EventError, parse_event


async def _quiet(exc: Exception) -> None:
    """nats-py logs every failed attempt with a traceback; the caller reports the failure once."""


class CtlError(WaftError):
    """A control request that failed or was refused; the message is the host's reason."""


#: The origin wash uses for `wash call`, so hosts and logs see the same caller as with wash.
WASH_CALLER_ID = "NwashHostCallerId000000000000000000000000000000000000000"


class CtlClient:
    def __init__(self, nc: NATS, prefix: str = subjects.DEFAULT_PREFIX, timeout: float = 2.0) -> None:
        self.nc = nc
        self.prefix = prefix
        self.timeout = timeout

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, prefix: str = subjects.DEFAULT_PREFIX,
                      timeout: float = 2.0) -> AsyncIterator[CtlClient]:
        try:
            # max_reconnect_attempts=0 means "never give up on the server" to nats-py's first connect, so
            # a dead NATS would hang the command; one attempt and no error logging fails fast instead.
            # the operator's key `waft up` stored, when there is one: the CLI needs no credentials flag
            nc = await nats.connect(server_urls(url), connect_timeout=timeout, max_reconnect_attempts=1,
                                    reconnect_time_wait=0, allow_reconnect=False, error_cb=_quiet,
                                    **host_connect_options(url))
        except (nats.errors.Error, OSError) as exc:
            raise CtlError(f"cannot reach NATS at {without_credentials(url)} ({type(exc).__name__}); "
                           "is the lattice up? (`waft up`)") from None
        try:
            yield cls(nc, prefix, timeout)
        finally:
            await nc.close()

    async def _request(self, *parts: str, body: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        subject = subjects.ctl(self.prefix, *parts)
        data = json.dumps(body).encode() if body is not None else b""
        try:
            reply = await self.nc.request(subject, data, timeout=timeout or self.timeout)
        except nats.errors.NoRespondersError:
            raise CtlError(f"no host answered {'.'.join(parts)}: "
                           f"is a host running on lattice {self.prefix!r}?") from None
        except nats.errors.TimeoutError:
            raise CtlError(f"no answer to {'.'.join(parts)} within {timeout or self.timeout:g} s") from None
        try:
            return json.loads(reply.data)
        except ValueError:
            raise CtlError(f"unreadable answer to {'.'.join(parts)}") from None

    async def _command(self, *parts: str, body: dict[str, Any]) -> None:
        answer = await self._request(*parts, body=body)
        if not isinstance(answer, dict) or not answer.get("accepted"):
            raise CtlError(str(answer.get("error") if isinstance(answer, dict) else answer) or "refused")

    # ------------------------------------------------------------------ queries
    async def get_hosts(self, wait: float | None = None) -> list[dict[str, Any]]:
        answers = await self._gather(subjects.ctl(self.prefix, "ping", "hosts"), None,
                                     wait if wait is not None else min(self.timeout, 1.0))
        return sorted(answers, key=lambda h: h.get("id", ""))

    async def get_inventory(self, host_id: str) -> dict[str, Any]:
        return await self._request("get", host_id, "inv")

    async def get_claims(self) -> list[dict[str, str]]:
        return (await self._request("get", "claims")).get("claims", [])

    async def get_links(self) -> list[dict[str, Any]]:
        return (await self._request("get", "links")).get("links", [])

    # ------------------------------------------------------------------ links
    async def put_link(self, actor_id: str, provider_id: str, contract_id: str, link_name: str = "default",
                       values: dict[str, str] | None = None) -> None:
        await self._command("linkdefs", "put", body={"actor_id": actor_id, "provider_id": provider_id,
                                                     "contract_id": contract_id, "link_name": link_name,
                                                     "values": values or {}})

    async def delete_link(self, actor_id: str, contract_id: str, link_name: str = "default") -> None:
        await self._command("linkdefs", "del", body={"actor_id": actor_id, "contract_id": contract_id,
                                                     "link_name": link_name})

    # ------------------------------------------------------------------ commands
    async def start_actor(self, host_id: str, actor_ref: str, count: int = 1,
                          annotations: dict[str, str] | None = None) -> None:
        await self._command("cmd", host_id, "la", body={"actor_ref": actor_ref, "count": count,
                                                        "annotations": annotations or {}, "host_id": host_id})

    async def stop_actor(self, host_id: str, actor_id: str, count: int = 0,
                         annotations: dict[str, str] | None = None) -> None:
        """Stop `count` instances (0 = all); with `annotations`, only instances carrying them (an app's own)."""
        await self._command("cmd", host_id, "sa", body={"actor_ref": actor_id, "count": count, "host_id": host_id,
                                                        "annotations": annotations or {}})

    async def scale_actor(self, host_id: str, actor_id: str, count: int, actor_ref: str = "") -> None:
        await self._command("cmd", host_id, "scale", body={"actor_id": actor_id, "actor_ref": actor_ref,
                                                           "count": count, "host_id": host_id})

    async def start_provider(self, host_id: str, provider_ref: str, link_name: str = "default",
                             configuration: str = "", annotations: dict[str, str] | None = None) -> None:
        await self._command("cmd", host_id, "lp", body={"provider_ref": provider_ref, "link_name": link_name,
                                                        "configuration": configuration, "host_id": host_id,
                                                        "annotations": annotations or {}})

    async def stop_provider(self, host_id: str, provider_id: str, link_name: str = "default",
                            contract_id: str = "") -> None:
        await self._command("cmd", host_id, "sp", body={"provider_ref": provider_id, "link_name": link_name,
                                                        "contract_id": contract_id, "host_id": host_id})

    async def stop_host(self, host_id: str) -> None:
        await self._command("cmd", host_id, "stop", body={"host_id": host_id})

    async def auction_actor(self, actor_ref: str, constraints: dict[str, str] | None = None,
                            wait: float = 0.5) -> list[dict[str, Any]]:
        return await self._gather(subjects.ctl(self.prefix, "auction", "actor"),
                                  {"actor_ref": actor_ref, "constraints": constraints or {}}, wait)

    async def choose_host(self, host_id: str | None = None, *, actor_ref: str = "",
                          known: list[str] | None = None) -> str:
        """Where a command that names no host goes: the named host, else the only one, else the first to bid.

        `known` is the caller's list of hosts when it has one (the dashboard, a reconcile pass); a
        named host must then be among them.
        """
        hosts = known if known is not None else [h["id"] for h in await self.get_hosts()]
        if host_id:
            if known is not None and host_id not in hosts:
                raise CtlError(f"host {host_id} is not on lattice {self.prefix!r} (hosts: {', '.join(hosts)})")
            return host_id
        if not hosts:
            raise CtlError(f"no host is running on lattice {self.prefix!r}; start one with `waft up`")
        if len(hosts) == 1:
            return hosts[0]
        bids = await self.auction_actor(actor_ref, {})
        return str(bids[0]["host_id"]) if bids else hosts[0]

    async def call_actor(self, actor_id: str, operation: str, payload: bytes, *, cluster_seed: str | None = None,
                         timeout: float | None = None) -> bytes:
        """Invoke an actor as `wash call` does: a signed invocation from the wash caller, the raw answer back.

        Signing needs the lattice's cluster seed: the one given, else the key store's `cluster` (which
        every host started from this machine's CLI shares).
        """
        from waft.claims import KeyPair, Role, keystore
        from waft.lattice.rpc import LatticeConfig, LatticeRpc, RpcError
        from waft.lattice.types import WasmCloudEntity

        stored = keystore.load("cluster")
        seed = cluster_seed or (stored.seed if stored else None)
        if not seed:
            raise CtlError("calling an actor needs the lattice's cluster seed: pass --cluster-seed or set "
                           "WAFT_CLUSTER_SEED (`waft up` keeps it in the key store as 'cluster')")
        cluster = KeyPair.from_seed(seed)
        if cluster.role is not Role.CLUSTER:
            raise CtlError("--cluster-seed must be a cluster seed (SC…)")
        rpc = LatticeRpc(self.nc, LatticeConfig(self.prefix, cluster, WASH_CALLER_ID))
        try:
            return await rpc.invoke(WasmCloudEntity("__WASH__"), WasmCloudEntity.actor(actor_id), operation,
                                    payload, timeout=timeout or self.timeout)
        except RpcError as exc:
            raise CtlError(f"call failed: {exc}") from None

    async def _gather(self, subject: str, body: dict[str, Any] | None, wait: float) -> list[dict[str, Any]]:
        """Scatter-gather: every answer that arrives before `wait` runs out."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        answers = []
        try:
            await self.nc.publish(subject, json.dumps(body).encode() if body is not None else b"", reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except nats.errors.TimeoutError:
                    break
                with contextlib.suppress(ValueError):
                    answers.append(json.loads(msg.data))
        finally:
            await sub.unsubscribe()
        return answers

    # ------------------------------------------------------------------ events
    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of the lattice's CloudEvents, parsed, from now until the block ends."""
        queue: asyncio.Queue[Event] = asyncio.Queue()

        async def on_event(msg: Any) -> None:
            with contextlib.suppress(EventError):
                queue.put_nowait(parse_event(msg.data))

        sub = await self.nc.subscribe(subjects.events(self.prefix), cb=on_event)
        try:
            yield queue
        finally:
            await sub.unsubscribe()


async def wait_for_event(queue: asyncio.Queue[Event], name: str, timeout: float = 10.0, **match: Any) -> Event:
    """The next event of kind `name` whose data has the given values; other events are skipped."""
    async def find() -> Event:
        while True:
            event = await queue.get()
            if event.kind == name and event.matches(**match):
                return event

    try:
        return await asyncio.wait_for(find(), timeout)
    except TimeoutError:
        raise CtlError(f"no {name} event {match or ''} within {timeout:g} s") from None
