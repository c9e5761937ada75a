"""The host: runs actors and supervises providers on one lattice.

Everything a host does lives in one TaskGroup opened by `run()`: subscriptions' handlers, provider
supervision, heartbeats. Leaving `run()` stops providers, drains NATS and joins every task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft import __version__
from waft.claims import ClaimsError, KeyPair, Role, verify_actor
from waft.config import without_credentials
from waft.host.actors import ActorPool
from waft.host.lattice_cache import LatticeCache
from waft.host.providers import ProviderSpec, ProviderStartError, ProviderSupervisor, RunningProvider
from waft.host.wapc import ActorTrap, GuestError, HostCall, HostCallError, Limits, Runtime
from waft.lattice import events as lattice_events
from waft.lattice import subjects
from waft.lattice.codec import DecodeError, as_bytes, as_str, pack, unpack_map
from waft.lattice.events import EventPublisher
from waft.lattice.host_data import HostData
from waft.lattice.rpc import InvocationRejected, LatticeConfig, LatticeRpc, RpcError, wait_closed
from waft.lattice.types import LinkDefinition, WasmCloudEntity
from waft.oci.refs import looks_like_oci

log = logging.getLogger("waft.host")

BUILTIN_LOGGING = "wasmcloud:builtin:logging"
BUILTIN_NUMBERGEN = "wasmcloud:builtin:numbergen"


class StartError(Exception):
    """An actor or provider that cannot start here; the message says why."""


@dataclass
class HostConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = subjects.DEFAULT_PREFIX
    host_seed: str | None = None
    cluster_seed: str | None = None
    cluster_issuers: list[str] = field(default_factory=list)
    allowed_issuers: list[str] = field(default_factory=list)
    rpc_timeout_s: float = 2.0
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    heartbeat_interval_s: float = 30.0
    health_interval_s: float = 10.0
    friendly_name: str = ""
    allow_latest: bool = False
    allowed_insecure: list[str] = field(default_factory=list)

    @classmethod
    def from_env(cls, **overrides: object) -> HostConfig:
        """Flags win over `WAFT_*`/`WASMCLOUD_*` variables, which win over defaults."""
        env = os.environ

        def pick(*names: str) -> str | None:
            return next((env[n] for n in names if env.get(n)), None)

        config = cls()
        config.prefix = pick("WAFT_LATTICE_PREFIX", "WASMCLOUD_LATTICE_PREFIX") or config.prefix
        config.host_seed = pick("WAFT_HOST_SEED", "WASMCLOUD_HOST_SEED")
        config.cluster_seed = pick("WAFT_CLUSTER_SEED", "WASMCLOUD_CLUSTER_SEED")
        issuers = pick("WAFT_CLUSTER_ISSUERS", "WASMCLOUD_CLUSTER_ISSUERS")
        config.cluster_issuers = [i.strip() for i in issuers.split(",") if i.strip()] if issuers else []
        allowed = pick("WAFT_ALLOWED_ISSUERS")
        config.allowed_issuers = [i.strip() for i in allowed.split(",") if i.strip()] if allowed else []
        timeout = pick("WAFT_RPC_TIMEOUT_MS", "WASMCLOUD_RPC_TIMEOUT_MS")
        if timeout:
            config.rpc_timeout_s = int(timeout) / 1000
        config.allow_latest = (pick("WAFT_OCI_ALLOW_LATEST", "WASMCLOUD_OCI_ALLOW_LATEST") or "") in ("1", "true")
        insecure = pick("WAFT_OCI_ALLOWED_INSECURE", "WASMCLOUD_OCI_ALLOWED_INSECURE")
        config.allowed_insecure = [i.strip() for i in insecure.split(",") if i.strip()] if insecure else []
        config.labels = {k[5:].lower(): v for k, v in env.items() if k.startswith("HOST_") and len(k) > 5}
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        return config

    def with_stored_cluster_key(self) -> HostConfig:
        """Hosts started from the CLI share the cluster key kept in the key store, so `waft ctl call`
        and every host on this machine trust each other without passing seeds around."""
        if not self.cluster_seed:
            from waft.claims import keystore

            self.cluster_seed = keystore.load_or_create("cluster", Role.CLUSTER).seed
        return self


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
        self.nc: NATS | None = None
        self.rpc: LatticeRpc | None = None
        self.events: EventPublisher | None = None
        self.cache: LatticeCache | None = None
        self.providers: ProviderSupervisor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._subs: list[object] = []

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        """Serve until `stop()` is called; clean up everything on the way out."""
        self._loop = asyncio.get_running_loop()
        self.nc = await nats.connect(self.config.nats_url, name=f"waft host {self.host_id[:8]}",
                                     max_reconnect_attempts=-1, reconnect_time_wait=0.25)
        lattice = LatticeConfig(self.config.prefix, self.cluster_key, self.host_id,
                                set(self.config.cluster_issuers), self.config.rpc_timeout_s)
        self.rpc = LatticeRpc(self.nc, lattice)
        self.events = EventPublisher(self.nc, self.config.prefix, self.host_id)
        self.cache = LatticeCache(self.nc, self.config.prefix)
        await self.cache.start()
        self.providers = ProviderSupervisor(self.nc, self.config.prefix, self._host_data_for, self.events.publish,
                                            self.cache.links_for_provider,
                                            health_interval_s=self.config.health_interval_s)
        try:
            await self._serve()
        except* _Stopped:
            pass  # the normal way out: _shutdown cancels the background tasks this way
        finally:
            # Guests still running (a loop, a slow decode) trap now; then no worker thread outlives us.
            self.runtime.interrupt_all()
            await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
            self.runtime.close()

    async def _serve(self) -> None:
        from waft.host.control import ControlInterface

        async with asyncio.TaskGroup() as tasks:
            assert self.providers is not None and self.events is not None
            self._tasks = tasks
            self.providers.attach(tasks)
            self.control = ControlInterface(self)
            await self.control.subscribe()
            await self.events.publish(lattice_events.host_started(self.labels, self.friendly_name))
            tasks.create_task(self._heartbeat_loop())
            await self.nc.flush(timeout=5)  # subscriptions are live at the server before anyone is told
            self._ready.set()
            log.info("host %s up on lattice %r", self.host_id, self.config.prefix)
            await self._stop.wait()
            await self._shutdown()

    async def _shutdown(self) -> None:
        assert self.providers is not None and self.events is not None and self.nc is not None
        await self.control.unsubscribe()
        for pool in list(self.actors.values()):
            await self._stop_pool(pool)
        await self.providers.stop_all()
        await self.events.publish(lattice_events.host_stopped(self.labels))
        if self.cache:
            await self.cache.stop()
        await wait_closed(self.nc)
        raise _Stopped

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def stop(self) -> None:
        self._stop.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.publish_heartbeat()
            await asyncio.sleep(self.config.heartbeat_interval_s)

    async def publish_heartbeat(self) -> None:
        assert self.events is not None and self.providers is not None
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
        assert self.events is not None and self.nc is not None and self.cache is not None
        try:
            module_bytes = await self._fetch_actor(image_ref)
            claims = verify_actor(module_bytes, allowed_issuers=self.config.allowed_issuers)
        except (ClaimsError, StartError, OSError) as exc:
            error = f"cannot start actor {image_ref}: {exc}"
            await self.events.publish(lattice_events.actor_start_failed(image_ref, error))
            raise StartError(error) from None
        pool = self.actors.get(claims.subject)
        if pool is not None and pool.image_ref != image_ref:
            error = (f"actor {claims.subject} is already running with different OCI reference "
                     f"{pool.image_ref}. To upgrade an actor, use live update.")
            await self.events.publish(lattice_events.actor_start_failed(image_ref, error))
            raise StartError(error)
        if pool is None:
            try:
                module = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.runtime.compile, module_bytes)
            except ActorTrap as exc:
                await self.events.publish(lattice_events.actor_start_failed(image_ref, str(exc)))
                raise StartError(str(exc)) from None
            pool = ActorPool(module, claims, image_ref, self.config.limits, self.executor, self._host_call_for)
            self.actors[claims.subject] = pool
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
        assert self.events is not None
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
        assert self.events is not None
        self.actors.pop(pool.public_key, None)
        for instance in list(pool.instances):
            await self.events.publish(lattice_events.actor_stopped(pool.public_key, instance.instance_id))
        await pool.close()
        if self.nc is not None:  # the server must drop our subscription before stop_actor returns:
            with contextlib.suppress(Exception):  # a request sent after it must find no responders,
                await self.nc.flush(timeout=2)  # not a subscriber that silently ignores it

    async def _on_actor_rpc(self, msg: Msg) -> None:
        assert self._tasks is not None
        self._tasks.create_task(self._handle_actor_rpc(msg))

    async def _handle_actor_rpc(self, msg: Msg) -> None:
        assert self.rpc is not None
        try:
            invocation = await self.rpc.receive(msg.data)
        except InvocationRejected as exc:
            await self.rpc.reject(msg, msg.data, str(exc))
            return
        pool = self.actors.get(invocation.target.public_key)
        if pool is None:
            error = f"actor {invocation.target.public_key} is not running here"
            await self.rpc.respond(msg, invocation.id, error=error)
            return
        try:
            answer, instance_id = await self.invoke_local(pool, invocation.origin, invocation.operation, invocation.msg)
        except (GuestError, ActorTrap, HostCallError, TimeoutError) as exc:
            await self.rpc.respond(msg, invocation.id, error=_describe(exc))
            return
        await self.rpc.respond(msg, invocation.id, answer, instance_id=instance_id)

    async def invoke_local(self, pool: ActorPool, origin: WasmCloudEntity, operation: str,
                           payload: bytes) -> tuple[bytes, str]:
        """Capability check on the way in, then run on one of the pool's instances."""
        if not origin.is_actor and origin.contract_id not in pool.claims.caps:
            raise HostCallError(f"Actor is missing the capability claim for {origin.contract_id!r} "
                                f"(operation {operation})")
        timeout = self.config.limits.deadline_ms / 1000 + self.config.rpc_timeout_s
        return await pool.call(operation, payload, timeout)

    # ------------------------------------------------------------------ host calls from guests
    def _host_call_for(self, pool: ActorPool) -> HostCall:
        """The guest's `__host_call`: runs on the worker thread, routed on the host's event loop."""

        def host_call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self._route(pool, binding, namespace, operation, payload),
                                                      self._loop)
            try:
                return future.result(timeout=self.config.rpc_timeout_s + 60)
            except HostCallError:
                raise
            except Exception as exc:
                raise HostCallError(f"Host send error {type(exc).__name__}: {exc}") from None

        return host_call

    async def _route(self, pool: ActorPool, binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        """§2.6: builtins, then linked providers, then actors by key or call alias."""
        assert self.rpc is not None and self.cache is not None
        caps = pool.claims.caps
        prefix = self.config.prefix
        origin = WasmCloudEntity.actor(pool.public_key)
        if namespace in (BUILTIN_LOGGING, BUILTIN_NUMBERGEN):
            if namespace not in caps:
                raise HostCallError(f"Invocation not authorized: missing capability claim for {namespace}")
            return self._builtin(pool, namespace, operation, payload)
        link = self.cache.links.get((pool.public_key, namespace, binding or "default"))
        if link is not None:
            if namespace not in caps:
                raise HostCallError(f"Invocation not authorized: missing capability claim for {namespace}")
            target = WasmCloudEntity.provider(link.provider_id, link.contract_id, link.link_name)
            return await self._invoke(origin, target, operation, payload)
        target_key = None
        if namespace.startswith("M") and len(namespace) == 56:
            target_key = namespace
        else:
            target_key = self.cache.find_alias(namespace)
        if target_key is None:
            if ":" in namespace:
                if namespace not in caps:
                    raise HostCallError(f"Invocation not authorized: missing capability claim for {namespace}")
                raise HostCallError(f"Invocation not authorized: missing link definition for {namespace} "
                                    f"on {prefix}")
            raise HostCallError(f"Call alias not found: {namespace} on {prefix}")
        local = self.actors.get(target_key)
        if local is not None:  # same-host actor-to-actor calls skip NATS
            try:
                answer, _ = await self.invoke_local(local, origin, operation, payload)
            except (GuestError, ActorTrap, TimeoutError) as exc:
                raise HostCallError(_describe(exc)) from None
            return answer
        return await self._invoke(origin, WasmCloudEntity.actor(target_key), operation, payload)

    async def _invoke(self, origin: WasmCloudEntity, target: WasmCloudEntity, operation: str, payload: bytes) -> bytes:
        assert self.rpc is not None
        try:
            return await self.rpc.invoke(origin, target, operation, payload)
        except RpcError as exc:
            raise HostCallError(str(exc)) from None

    def _builtin(self, pool: ActorPool, namespace: str, operation: str, payload: bytes) -> bytes:
        try:
            if namespace == BUILTIN_LOGGING:
                if operation != "Logging.WriteLog":
                    raise HostCallError(f"unknown operation {operation} for {namespace}")
                entry = unpack_map(payload, what="log entry")
                level = as_str(entry.get("level"), field="level", default="info").lower()
                text = as_str(entry.get("text"), field="text")
                log.log(logging.getLevelName(level.upper()) if level in ("debug", "info", "warn", "error")
                        else logging.INFO, "[%s] %s", pool.claims.name, text)
                return b""
            if operation == "NumberGen.GenerateGuid":
                return pack(str(uuid.uuid4()))
            if operation == "NumberGen.Random32":
                return pack(int.from_bytes(os.urandom(4), "little"))
            if operation == "NumberGen.RandomInRange":
                bounds = unpack_map(payload, what="range")
                low, high = int(bounds.get("min", 0)), int(bounds.get("max", 0))
                if high < low:
                    raise HostCallError("RandomInRange: max is below min")
                return pack(low + int.from_bytes(os.urandom(4), "little") % (high - low + 1))
        except (DecodeError, ValueError, TypeError) as exc:
            raise HostCallError(f"bad {namespace} request: {exc}") from None
        raise HostCallError(f"unknown operation {operation} for {namespace}")

    # ------------------------------------------------------------------ providers and links
    def _host_data_for(self, provider: RunningProvider) -> HostData:
        assert self.cache is not None
        url = self.config.nats_url.split("://", 1)[-1]
        return HostData(host_id=self.host_id, lattice_rpc_prefix=self.config.prefix, link_name=provider.link_name,
                        lattice_rpc_url=url, provider_key=provider.public_key,
                        invocation_seed=self.cluster_key.seed,
                        cluster_issuers=sorted({*self.config.cluster_issuers, self.cluster_key.public_key}),
                        instance_id=provider.instance_id,
                        link_definitions=self.cache.links_for_provider(provider.public_key, provider.link_name),
                        config_json=provider.config_json,
                        default_rpc_timeout_ms=int(self.config.rpc_timeout_s * 1000))

    async def start_provider(self, provider_ref: str, link_name: str = "default", config_json: str = "",
                             annotations: dict[str, str] | None = None) -> RunningProvider:
        assert self.providers is not None and self.events is not None and self.cache is not None
        try:
            spec = await self._resolve_provider(provider_ref)
            provider = await self.providers.start(spec, link_name, config_json, annotations)
        except (ProviderStartError, StartError, OSError) as exc:
            await self.events.publish(lattice_events.provider_start_failed(provider_ref, link_name, str(exc)))
            raise StartError(f"cannot start provider {provider_ref}: {exc}") from None
        await self.cache.put_claims(spec.public_key, {"iss": spec.claims.get("iss", ""), "name": spec.name,
                                                      "sub": spec.public_key, "caps": spec.contract_id,
                                                      "version": spec.claims.get("version", ""),
                                                      "rev": spec.claims.get("rev", "0"), "tags": "",
                                                      "call_alias": ""})
        return provider

    async def _resolve_provider(self, provider_ref: str) -> ProviderSpec:
        from waft.host.provider_refs import resolve_provider

        return await resolve_provider(provider_ref, allow_latest=self.config.allow_latest,
                                      allowed_insecure=self.config.allowed_insecure)

    async def stop_provider(self, public_key: str, link_name: str) -> bool:
        assert self.providers is not None
        return await self.providers.stop(public_key, link_name) is not None

    async def put_link(self, link: LinkDefinition) -> None:
        assert self.cache is not None and self.providers is not None and self.events is not None
        previous = self.cache.links.get(link.key)
        if previous is not None and previous.provider_id == link.provider_id and previous.values == link.values:
            return  # idempotent: re-applying a manifest changes nothing
        await self.cache.put_link(link)
        if previous is not None:
            await self.providers.deliver_link_del(previous)
        await self.providers.deliver_link_put(link)
        await self.events.publish(lattice_events.linkdef_set(link))

    async def delete_link(self, actor_id: str, contract_id: str, link_name: str) -> bool:
        assert self.cache is not None and self.providers is not None and self.events is not None
        link = await self.cache.delete_link(actor_id, contract_id, link_name)
        if link is None:
            return False
        await self.providers.deliver_link_del(link)
        await self.events.publish(lattice_events.linkdef_deleted(link))
        return True

    def inventory(self) -> dict:
        assert self.providers is not None
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "actor did not answer in time: all instances are busy"
    return str(exc)


async def run_host(config: HostConfig) -> None:
    """Run a host until cancelled or stopped (what `waft host` does)."""
    await Host(config).run()


__all__ = ["Host", "HostConfig", "StartError", "as_bytes", "run_host"]
