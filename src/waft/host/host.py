"""The host: runs actors and supervises providers on one lattice.

Everything a host does lives in one TaskGroup opened by `run()`: subscriptions' handlers, provider
supervision, heartbeats. Leaving `run()` stops providers, drains NATS and joins every task. What
exists only while connected (NATS, RPC, events, the lattice cache, the supervisor) is one `Session`
built by `run()`; the control interface sees the host only through `control.Controlled`, and host
calls are routed by `routing.HostCallRouter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft import __version__
from waft.claims import KeyPair, Role, verify_actor
from waft.config import without_credentials
from waft.errors import WaftError
from waft.host.actors import ActorPool
from waft.host.config import HostConfig
from waft.host.control import ControlInterface
from waft.host.lattice_cache import LatticeCache
from waft.host.provider_refs import resolve_provider
from waft.host.providers import ProviderSpec, ProviderSupervisor, RunningProvider
from waft.host.routing import HostCallRouter, describe_failure, failure_kind
from waft.host.wapc import ActorTrap, GuestError, HostCallError, Runtime
from waft.lattice import events as lattice_events
from waft.lattice import subjects
from waft.lattice.connection import connect, server_caught_up
from waft.lattice.events import EventPublisher
from waft.lattice.host_data import HostData
from waft.lattice.rpc import InvocationRejected, LatticeConfig, LatticeRpc, wait_closed
from waft.lattice.types import LinkDefinition, WasmCloudEntity
from waft.oci.refs import looks_like_oci

if TYPE_CHECKING:
    from waft.reconciler import Reconciler

log = logging.getLogger("waft.host")

class StartError(WaftError):
    """An actor or provider that cannot start here; the message says why."""


class HostNotRunning(WaftError):
    """Asked for something that exists only while `run()` is connected to the lattice."""


@dataclass
class Session:
    """What a host has only while connected: built by `run()`, gone when it returns."""

    loop: asyncio.AbstractEventLoop
    nc: NATS
    rpc: LatticeRpc
    events: EventPublisher
    cache: LatticeCache
    providers: ProviderSupervisor
    router: HostCallRouter
    tasks: asyncio.TaskGroup
    control: ControlInterface


def _human(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(p for p in parts if p)


class Host:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.host_key = KeyPair.from_seed(config.host_seed) if config.host_seed else KeyPair.generate(Role.SERVER)
        self.cluster_key = (KeyPair.from_seed(config.cluster_seed) if config.cluster_seed
                            else KeyPair.generate(Role.CLUSTER))
        self.host_id = self.host_key.public_key
        self.friendly_name = config.friendly_name or f"waft-{self.host_id[-6:].lower()}"
        self.labels = {"hostcore.arch": platform.machine(), "hostcore.os": platform.system().lower(),
                       "hostcore.osfamily": "unix" if os.name == "posix" else os.name, **config.labels}
        self.started = time.time()
        self.runtime = Runtime()
        self.executor = ThreadPoolExecutor(max_workers=128, thread_name_prefix="waft-actor")
        self.actors: dict[str, ActorPool] = {}
        self._session: Session | None = None
        self._reconciler: Reconciler | None = None  # while connected, when config.reconciler
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    @property
    def session(self) -> Session:
        if self._session is None:
            raise HostNotRunning(f"host {self.host_id} is not connected to a lattice (call run() first)")
        return self._session

    # The parts of the session that tests and tools reach for by name.
    @property
    def nc(self) -> NATS:
        return self.session.nc

    @property
    def rpc(self) -> LatticeRpc:
        return self.session.rpc

    @property
    def events(self) -> EventPublisher:
        return self.session.events

    @property
    def cache(self) -> LatticeCache:
        return self.session.cache

    @property
    def providers(self) -> ProviderSupervisor:
        return self.session.providers

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Serve until `stop()` is called; clean up everything on the way out."""
        config = self.config
        nc = await connect(config.nats_url, config.nats_seed, name=f"waft host {self.host_id[:8]}")
        try:
            lattice = LatticeConfig(config.prefix, self.cluster_key, self.host_id, set(config.cluster_issuers),
                                    config.rpc_timeout_s)
            rpc = LatticeRpc(nc, lattice)
            events = EventPublisher(nc, config.prefix, self.host_id)
            cache = LatticeCache(nc, config.prefix)
            await cache.start()
            providers = ProviderSupervisor(nc, config.prefix, self._host_data_for, events.publish,
                                           cache.links_for_provider, health_interval_s=config.health_interval_s,
                                           env=config.provider_env)
            router = HostCallRouter(asyncio.get_running_loop(), config.prefix, rpc, cache, self.actors,
                                    self.invoke_local, wait_s=config.rpc_timeout_s + 60, spawn=self.background)
            async with asyncio.TaskGroup() as tasks:
                self._session = Session(asyncio.get_running_loop(), nc, rpc, events, cache, providers, router,
                                        tasks, ControlInterface(self, nc, config.prefix))
                await self._serve(self._session)
        except* _Stopped:
            pass  # the normal way out: _shutdown cancels the background tasks this way
        finally:
            # Guests still running (a loop, a slow decode) trap now; then no worker thread outlives us.
            self.runtime.interrupt_all()
            await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
            self.runtime.close()
            if not nc.is_closed:
                with contextlib.suppress(Exception):
                    await nc.close()
            self._session = None

    async def _serve(self, session: Session) -> None:
        session.providers.attach(session.tasks)
        await session.control.subscribe()
        await session.events.publish(lattice_events.host_started(self.labels, self.friendly_name))
        session.tasks.create_task(self._heartbeat_loop())
        if self.config.reconciler:
            from waft.reconciler import Reconciler  # apps and their store load only where a reconciler runs

            self._reconciler = Reconciler(session.nc, self.config.prefix, self.host_id)
            session.tasks.create_task(self._reconciler.run())
        await server_caught_up(session.nc)  # subscriptions are live at the server before anyone is told
        self._ready.set()
        log.info("host %s up on lattice %r", self.host_id, self.config.prefix)
        await self._stop.wait()
        await self._shutdown(session)

    async def _shutdown(self, session: Session) -> None:
        await session.control.unsubscribe()
        if self._reconciler is not None:  # hand the lead over now, not when the lease expires
            await self._reconciler.release()
        for pool in list(self.actors.values()):
            await self._stop_pool(pool)
        provider_keys = {p.public_key for p in session.providers.running.values()}
        await session.providers.stop_all()
        for public_key in sorted(provider_keys):
            await session.cache.release(public_key, self.host_id)
        await session.events.publish(lattice_events.host_stopped(self.labels))
        await session.cache.stop()
        await wait_closed(session.nc)
        raise _Stopped

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def stop(self) -> None:
        self._stop.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.publish_heartbeat()
            await asyncio.sleep(self.config.heartbeat_interval_s)
            try:
                await self._renew_presence()
                await self.cache.sweep(self.host_id, self.config.stale_heartbeats)
            except Exception:  # a cache hiccup must never take the host down; the next heartbeat retries
                log.exception("renewing or sweeping presence in the lattice cache failed")

    async def _renew_presence(self) -> None:
        """Re-put what this host runs into the lattice cache, so other hosts can tell it from a dead host's
        leftovers (`LatticeCache.sweep`); claims a sweep removed while this host was frozen come back."""
        every = self.config.heartbeat_interval_s
        running = {pk: pool.claims.summary() for pk, pool in list(self.actors.items())}
        running.update({p.public_key: self._provider_claims(p.spec) for p in self.providers.running.values()})
        def still_running(public_key: str) -> bool:  # a stop may have run meanwhile: never resurrect its entry
            return public_key in self.actors or any(p.public_key == public_key
                                                    for p in self.providers.running.values())

        for public_key, claims in running.items():
            if not still_running(public_key):
                continue
            await self.cache.hold(public_key, self.host_id, every)
            if not still_running(public_key):
                await self.cache.release(public_key, self.host_id)
            elif public_key not in self.cache.claims:
                await self.cache.put_claims(public_key, claims)

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` in the host's task group: it is cancelled and joined when the host stops."""
        self.session.tasks.create_task(work)

    async def publish_heartbeat(self) -> None:
        await self.events.publish(lattice_events.host_heartbeat(
            actors=[(pk, i.instance_id) for pk, pool in self.actors.items() for i in pool.instances],
            providers=[(p.public_key, p.link_name, p.contract_id, p.instance_id)
                       for p in self.providers.running.values()],
            labels=self.labels, friendly_name=self.friendly_name, version=__version__,
            uptime_s=time.time() - self.started, uptime_human=_human(time.time() - self.started)))

    def describe(self) -> dict:
        """The `ping.hosts` answer (§5). Anyone on the lattice may ask, so NATS credentials are left out."""
        url = without_credentials(self.config.nats_url)
        return {"id": self.host_id, "issuer": self.cluster_key.public_key, "labels": self.labels,
                "friendly_name": self.friendly_name, "uptime_seconds": int(time.time() - self.started),
                "uptime_human": _human(time.time() - self.started), "version": __version__,
                "cluster_issuers": ",".join(sorted({*self.config.cluster_issuers, self.cluster_key.public_key})),
                "js_domain": None, "ctl_host": url, "prov_rpc_host": url, "rpc_host": url,
                "lattice_prefix": self.config.prefix}

    # ------------------------------------------------------------------ actors
    async def start_actor(self, image_ref: str, count: int = 1, annotations: dict[str, str] | None = None) -> ActorPool:
        """Verify and start `count` instances of the actor at `image_ref` (a file path or OCI ref)."""
        try:
            module_bytes = await self._fetch_actor(image_ref)
            claims = verify_actor(module_bytes, trust=self.config.trust_policy())
        except (WaftError, OSError) as exc:  # bad claims, a registry refusal, an unreadable file
            error = f"cannot start actor {image_ref}: {exc}"
            await self.events.publish(lattice_events.actor_start_failed(image_ref, error))
            raise StartError(error) from None
        pool = self.actors.get(claims.subject)
        if pool is not None and pool.image_ref != image_ref:
            error = (f"actor {claims.subject} is already running with different OCI reference "
                     f"{pool.image_ref}. To upgrade an actor, use live update.")
            await self.events.publish(lattice_events.actor_start_failed(image_ref, error))
            raise StartError(error)
        alias = claims.summary().get("call_alias", "")
        taken = [k for k in self.cache.alias_owners(alias) if k != claims.subject] if alias else []
        if pool is None and taken:
            error = f"call alias {alias!r} is already claimed by actor {taken[0]}; an alias names one actor"
            await self.events.publish(lattice_events.actor_start_failed(image_ref, error))
            raise StartError(error)
        if pool is None:
            try:
                module = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.runtime.compile, module_bytes)
            except ActorTrap as exc:
                await self.events.publish(lattice_events.actor_start_failed(image_ref, str(exc)))
                raise StartError(str(exc)) from None
            pool = ActorPool(module, claims, image_ref, self.config.limits, self.executor,
                             self.session.router.host_call_for)
            self.actors[claims.subject] = pool
            await self.cache.hold(claims.subject, self.host_id, self.config.heartbeat_interval_s)
            await self.cache.put_claims(claims.subject, claims.summary())
            pool.subscription = await self.nc.subscribe(
                subjects.actor_rpc(self.config.prefix, claims.subject),
                queue=subjects.actor_rpc(self.config.prefix, claims.subject), cb=self._on_actor_rpc)
        try:
            added = await pool.add(count, annotations)
        except ActorTrap as exc:
            if not pool.instances:
                await self._stop_pool(pool)
            await self.events.publish(lattice_events.actor_start_failed(image_ref, str(exc)))
            raise StartError(f"cannot start actor {image_ref}: {exc}") from None
        for instance in added:
            await self.events.publish(lattice_events.actor_started(
                claims, image_ref=image_ref, instance_id=instance.instance_id, annotations=instance.annotations,
                api_version=instance.wapc.api_version))
        return pool

    async def _fetch_actor(self, image_ref: str) -> bytes:
        path = Path(image_ref.removeprefix("file://"))
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return await asyncio.to_thread(path.read_bytes)
        if looks_like_oci(image_ref):
            from waft.oci import fetch_actor  # the OCI part is optional until needed

            return await fetch_actor(image_ref, allow_latest=self.config.allow_latest,
                                     allowed_insecure=self.config.allowed_insecure)
        raise StartError(f"no such file, and not an OCI reference: {image_ref}")

    async def stop_actor(self, public_key: str, count: int = 0, annotations: dict[str, str] | None = None) -> int:
        pool = self.actors.get(public_key)
        if pool is None:
            return 0
        removed = await pool.remove(count, annotations)
        for instance in removed:
            await self.events.publish(lattice_events.actor_stopped(public_key, instance.instance_id))
        if not pool.instances:
            await self._stop_pool(pool)
        return len(removed)

    async def scale_actor(self, public_key: str, image_ref: str, count: int) -> None:
        pool = self.actors.get(public_key)
        current = pool.count if pool else 0
        if count > current:
            await self.start_actor(image_ref or (pool.image_ref if pool else ""), count - current)
        elif count < current:
            await self.stop_actor(public_key, current - count if count > 0 else 0)

    async def _stop_pool(self, pool: ActorPool) -> None:
        self.actors.pop(pool.public_key, None)
        for instance in list(pool.instances):
            await self.events.publish(lattice_events.actor_stopped(pool.public_key, instance.instance_id))
        await pool.close()
        await self.cache.release(pool.public_key, self.host_id)
        # The server must drop our subscription before stop_actor returns: a request sent after it
        # must find no responders, not a subscriber that silently ignores it.
        with contextlib.suppress(Exception):
            await server_caught_up(self.nc, timeout=2)

    async def _on_actor_rpc(self, msg: Msg) -> None:
        self.background(self._handle_actor_rpc(msg))

    async def _handle_actor_rpc(self, msg: Msg) -> None:
        try:
            invocation = await self.rpc.receive(msg.data)
        except InvocationRejected as exc:
            await self.rpc.reject(msg, msg.data, str(exc))
            return
        pool = self.actors.get(invocation.target.public_key)
        if pool is None:
            error = f"actor {invocation.target.public_key} is not running here"
            await self.rpc.respond(msg, invocation.id, error=error, error_kind="not_running")
            return
        try:
            answer, instance_id = await self.invoke_local(pool, invocation.origin, invocation.operation, invocation.msg)
        except (GuestError, ActorTrap, HostCallError, TimeoutError) as exc:
            await self.rpc.respond(msg, invocation.id, error=describe_failure(exc), error_kind=failure_kind(exc))
            return
        await self.rpc.respond(msg, invocation.id, answer, instance_id=instance_id)

    async def invoke_local(self, pool: ActorPool, origin: WasmCloudEntity, operation: str,
                           payload: bytes) -> tuple[bytes, str]:
        """Capability check on the way in, then run on one of the pool's instances."""
        if not origin.is_actor and origin.contract_id not in pool.claims.caps:
            raise HostCallError(f"Actor is missing the capability claim for {origin.contract_id!r} "
                                f"(operation {operation})", kind="denied")
        timeout = self.config.limits.deadline_ms / 1000 + self.config.rpc_timeout_s
        return await pool.call(operation, payload, timeout)

    # ------------------------------------------------------------------ providers and links
    def _host_data_for(self, provider: RunningProvider) -> HostData:
        url = self.config.nats_url.split("://", 1)[-1]
        return HostData(host_id=self.host_id, lattice_rpc_prefix=self.config.prefix, link_name=provider.link_name,
                        lattice_rpc_url=url, provider_key=provider.public_key,
                        invocation_seed=self.cluster_key.seed,
                        cluster_issuers=sorted({*self.config.cluster_issuers, self.cluster_key.public_key}),
                        instance_id=provider.instance_id,
                        link_definitions=self.cache.links_for_provider(provider.public_key, provider.link_name),
                        config_json=provider.config_json,
                        default_rpc_timeout_ms=int(self.config.rpc_timeout_s * 1000),
                        lattice_rpc_user_seed=self.config.provider_nats_seed or "")

    async def start_provider(self, provider_ref: str, link_name: str = "default", config_json: str = "",
                             annotations: dict[str, str] | None = None) -> RunningProvider:
        try:
            spec = await resolve_provider(provider_ref, allow_latest=self.config.allow_latest,
                                          allowed_insecure=self.config.allowed_insecure,
                                          python_providers=self.config.python_providers,
                                          trust=self.config.trust_policy())
            provider = await self.providers.start(spec, link_name, config_json, annotations)
        except (WaftError, OSError) as exc:
            await self.events.publish(lattice_events.provider_start_failed(provider_ref, link_name, str(exc)))
            raise StartError(f"cannot start provider {provider_ref}: {exc}") from None
        await self.cache.hold(spec.public_key, self.host_id, self.config.heartbeat_interval_s)
        await self.cache.put_claims(spec.public_key, self._provider_claims(spec))
        return provider

    @staticmethod
    def _provider_claims(spec: ProviderSpec) -> dict[str, str]:
        return {"iss": spec.claims.get("iss", ""), "name": spec.name, "sub": spec.public_key,
                "caps": spec.contract_id, "version": spec.claims.get("version", ""),
                "rev": spec.claims.get("rev", "0"), "tags": "", "call_alias": ""}

    async def stop_provider(self, public_key: str, link_name: str) -> bool:
        stopped = await self.providers.stop(public_key, link_name) is not None
        if stopped and not any(p.public_key == public_key for p in self.providers.running.values()):
            await self.cache.release(public_key, self.host_id)
        return stopped

    async def put_link(self, link: LinkDefinition) -> None:
        previous = self.cache.links.get(link.key)
        if previous is not None and previous.provider_id == link.provider_id and previous.values == link.values:
            return  # idempotent: re-applying a manifest changes nothing
        await self.cache.put_link(link)
        if previous is not None:
            await self.providers.deliver_link_del(previous)
        await self.providers.deliver_link_put(link)
        await self.events.publish(lattice_events.linkdef_set(link))

    async def delete_link(self, actor_id: str, contract_id: str, link_name: str) -> bool:
        link = await self.cache.delete_link(actor_id, contract_id, link_name)
        if link is None:
            return False
        await self.providers.deliver_link_del(link)
        await self.events.publish(lattice_events.linkdef_deleted(link))
        return True

    # ------------------------------------------------------------------ what control asks
    def claims(self) -> list[dict[str, Any]]:
        return list(self.cache.claims.values())

    def links(self) -> list[LinkDefinition]:
        return list(self.cache.links.values())

    def runs_actor(self, public_key: str) -> bool:
        return public_key in self.actors

    def runs_provider(self, *, link_name: str, image_ref: str = "", public_key: str = "") -> bool:
        """Is a provider with this image ref (or, failing that, this key) running here on `link_name`?"""
        if image_ref:
            return any(p.spec.image_ref == image_ref and p.link_name == link_name
                       for p in self.providers.running.values())
        return bool(public_key) and (public_key, link_name) in self.providers.running

    def inventory(self) -> dict:
        return {
            "host_id": self.host_id, "issuer": self.cluster_key.public_key, "labels": self.labels,
            "friendly_name": self.friendly_name,
            "actors": [{"id": pk, "image_ref": pool.image_ref, "name": pool.claims.name,
                        "instances": [{"annotations": i.annotations, "instance_id": i.instance_id,
                                       "revision": pool.claims.rev} for i in pool.instances]}
                       for pk, pool in self.actors.items()],
            "providers": [{"id": p.public_key, "image_ref": p.spec.image_ref, "link_name": p.link_name,
                           "name": p.spec.name, "contract_id": p.contract_id, "instance_id": p.instance_id,
                           "annotations": p.annotations, "revision": 0, "healthy": p.healthy,
                           "health_message": p.health_message, "health_details": p.health_details,
                           "restarts": p.restarts}
                          for p in self.providers.running.values()],
        }


class _Stopped(Exception):
    """Raised inside the task group to cancel the remaining background tasks on shutdown."""


async def run_host(config: HostConfig) -> None:
    """Run a host until cancelled or stopped (what `waft host` does)."""
    await Host(config).run()


__all__ = ["Host", "HostConfig", "HostNotRunning", "Session", "StartError", "run_host"]
