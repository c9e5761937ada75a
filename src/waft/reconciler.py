"""The reconciler that keeps running: while an app is deployed, one host of the lattice keeps it as declared.

`waft app deploy` reconciles once; after that a host can leave (SIGKILL, a partition) or a provider
can give up, and nobody put the lost replicas back. Every host runs a `Reconciler` candidate (on by
default, `WAFT_RECONCILER=0` turns it off); one of them leads, elected through a JetStream key-value
bucket whose entries expire (`ttl` = the lease): the leader `create`d key `leader` and keeps `update`ing
it with the revision it last wrote, so a second writer is refused and a dead leader's key expires,
after which the next candidate's `create` wins. The leader reconciles every deployed app of the apps
store (`waft.app.reconcile`, which counts and changes only what carries the app's annotations) every
`interval` and whenever a host, actor or provider stops.

Each app is reconciled while its own key (`app.NAME`) in the same bucket is held, and `waft app
deploy`/`undeploy` hold the same key (`app_lease`) while they work: undeploy marks the app undeployed
under the key, so a pass that started before it has finished, and no later pass touches the app.

A host missing from one ping is asked for its inventory before its share is replaced: a busy host that
answered the ping late is not a lost one, while a killed host's subscriptions are gone (no responders).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from waft.app import LatticeState, Manifest, reconcile, undeploy
from waft.app_store import AppStore, bucket_name, manifest_of
from waft.config import int_setting
from waft.ctl import CtlClient, CtlError
from waft.errors import WaftError
from waft.lattice import subjects
from waft.lattice.events import EventError, parse_event

log = logging.getLogger("waft.reconciler")

LEADER_KEY = "leader"
#: Events after which the declared counts may no longer hold (a heartbeat says nothing new).
WAKING_EVENTS = frozenset({"host_stopped", "host_started", "actor_stopped", "provider_stopped",
                           "health_check_failed"})


class LeaseHeld(WaftError):
    """Another owner holds the lease (an app being deployed or reconciled elsewhere); the message says which."""


def _still_wanted() -> None:
    """Raise CancelledError if this task was asked to stop: nats-py swallows a cancellation that arrives while
    it publishes or flushes, and a loop that missed its host's cancellation would keep the host from stopping."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def lease_bucket(prefix: str) -> str:
    return f"waft_reconciler_{prefix}"


@dataclass(frozen=True)
class ReconcilerSettings:
    """How long a lease lives unrenewed, how often it is renewed, and how often the leader reconciles."""

    lease_s: float = 5.0
    renew_s: float = 1.0
    interval_s: float = 2.0
    ping_s: float = 0.5
    #: A component whose start failed waits `backoff_s` before the next try, doubled per failure up to
    #: `backoff_max_s`.
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0

    @classmethod
    def from_settings(cls, env: Mapping[str, str] | None = None) -> ReconcilerSettings:
        lease = int_setting("reconciler_lease_ms", 5000, env=env) / 1000
        interval = int_setting("reconciler_interval_ms", 2000, env=env) / 1000
        backoff = int_setting("reconciler_backoff_ms", 1000, env=env) / 1000
        backoff_max = int_setting("reconciler_backoff_max_ms", 60000, env=env) / 1000
        return cls(lease_s=lease, renew_s=max(lease / 5, 0.1), interval_s=interval, backoff_s=backoff,
                   backoff_max_s=max(backoff, backoff_max))


class ComponentBackoff:
    """Per component (app and name), when its start may be tried again: without it a start that keeps
    failing (an image that cannot be fetched or is not trusted, a provider that will not come up) was
    retried on every pass, and every event woke another pass. The delay doubles per consecutive failure,
    up to a bound, and a start that succeeds clears it."""

    def __init__(self, first_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.first_s, self.max_s, self.clock = first_s, max_s, clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (consecutive failures, next try at)

    def waiting(self, key: str) -> bool:
        entry = self._failures.get(key)
        return entry is not None and self.clock() < entry[1]

    def failed(self, key: str) -> float:
        """Record a failed start; returns the seconds until the next try."""
        failures = self._failures.get(key, (0, 0.0))[0] + 1
        delay = min(self.max_s, self.first_s * 2 ** (failures - 1))
        self._failures[key] = (failures, self.clock() + delay)
        return delay

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


async def open_leases(nc: NATS, prefix: str, lease_s: float) -> KeyValue:
    """The lattice's lease bucket (entries expire after `lease_s`), created on first use with the replicas
    of the rest of the lattice state, so an election survives the loss of a NATS node as the apps do."""
    from waft.lattice.replication import open_replicated_kv

    try:
        return await open_replicated_kv(nc, lease_bucket(prefix), history=1, ttl=lease_s)
    except nats.js.errors.BadRequestError:  # another host created it between our look and our create
        return await nc.jetstream().key_value(lease_bucket(prefix))


class Lease:
    """One key of the lease bucket, held while its owner keeps writing it with the revision it last wrote."""

    def __init__(self, kv: KeyValue, key: str, owner: str) -> None:
        self.kv, self.key, self.owner = kv, key, owner
        self.revision: int | None = None

    @property
    def held(self) -> bool:
        return self.revision is not None

    async def acquire(self) -> bool:
        try:
            self.revision = await self.kv.create(self.key, self.owner.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        return True

    async def renew(self) -> bool:
        """False when the lease was lost (it expired and someone else took it, or was deleted)."""
        if self.revision is None:
            return False
        try:
            self.revision = await self.kv.update(self.key, self.owner.encode(), last=self.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            self.revision = None
            return False
        return True

    async def release(self) -> None:
        if self.revision is not None:
            with contextlib.suppress(nats.js.errors.Error, nats.errors.Error):
                await self.kv.delete(self.key, last=self.revision)
            self.revision = None

    async def holder(self) -> str | None:
        try:
            entry = await self.kv.get(self.key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return (entry.value or b"").decode() or None


@contextlib.asynccontextmanager
async def app_lease(nc: NATS, prefix: str, app: str, owner: str, *, wait: float = 120.0,
                    settings: ReconcilerSettings | None = None) -> AsyncIterator[Lease]:
    """Hold app `app`'s lease for the block (what `waft app deploy`/`undeploy` do): a reconciler pass on
    the app finishes first, and none starts until the block ends. Renewed while held; LeaseHeld after `wait`."""
    settings = settings or ReconcilerSettings.from_settings()
    lease = Lease(await open_leases(nc, prefix, settings.lease_s), f"app.{app}", owner)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await lease.acquire():
        if loop.time() > deadline:
            raise LeaseHeld(f"application {app!r} is being changed by {await lease.holder() or 'someone else'}; "
                            "try again")
        await asyncio.sleep(0.1)

    async def keep() -> None:
        while True:
            await asyncio.sleep(settings.renew_s)
            if not await lease.renew():
                return

    keeper = asyncio.create_task(keep())
    try:
        yield lease
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)  # joined, whatever it ended with
        await lease.release()


async def deploy_stored(ctl: CtlClient, store: AppStore, manifest: Manifest, before: dict[str, Any] | None, *,
                        owner: str, host_id: str | None = None) -> list[str]:
    """Deploy `manifest` (already in `store`) and mark it deployed, under the app's lease: what `waft app
    deploy` and `waft up --app` do, so the lattice's reconciler keeps either as declared afterwards.
    `before` is the app's record before the manifest was stored: what its deployed version had and this one
    lacks is undeployed."""
    previous = manifest_of(before) if before and before.get("deployed") else None
    async with app_lease(ctl.nc, ctl.prefix, manifest.name, owner):
        done = await reconcile(ctl, manifest, host_id=host_id)
        if previous is not None and previous.to_oam() != manifest.to_oam():
            done += await undeploy(ctl, previous, keep=manifest)
        await store.set_deployed(manifest.name, manifest.version)
    return done


class Reconciler:
    """One candidate: elects itself when no leader holds the lease, and while leading reconciles every pass."""

    def __init__(self, nc: NATS, prefix: str, owner: str, settings: ReconcilerSettings | None = None) -> None:
        self.nc, self.prefix, self.owner = nc, prefix, owner
        self.settings = settings or ReconcilerSettings.from_settings()
        self.ctl = CtlClient(nc, prefix, timeout=max(2.0, self.settings.lease_s))
        self.leader: Lease | None = None
        self._app_leases: list[Lease] = []
        self._wake = asyncio.Event()
        self._known: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self.passes = 0
        self.backoff = ComponentBackoff(self.settings.backoff_s, self.settings.backoff_max_s)

    @property
    def leading(self) -> bool:
        return self.leader is not None and self.leader.held

    async def run(self) -> None:
        """Until cancelled: wait for an apps store (a lattice with no app needs no reconciler, nor its
        bucket), then stand as a candidate, and lead when elected."""
        js = self.nc.jetstream()
        while True:
            _still_wanted()
            try:
                await js.key_value(bucket_name(self.prefix))
                break
            except nats.errors.Error:  # no bucket yet (BucketNotFoundError is one), or NATS reconnecting
                await asyncio.sleep(self.settings.interval_s)
        kv = await open_leases(self.nc, self.prefix, self.settings.lease_s)
        self.leader = Lease(kv, LEADER_KEY, self.owner)
        sub = await self.nc.subscribe(subjects.events(self.prefix), cb=self._on_event)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._keep_leases())
                tasks.create_task(self._lead())
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def release(self) -> None:
        """Give the leadership up now (a host that stops on purpose), so another candidate need not wait
        for the lease to expire."""
        self._stopping = True
        for lease in [*self._app_leases, *([self.leader] if self.leader else [])]:
            await lease.release()

    async def _on_event(self, msg: Msg) -> None:
        with contextlib.suppress(EventError):
            if parse_event(msg.data).kind in WAKING_EVENTS:
                self._wake.set()

    async def _keep_leases(self) -> None:
        assert self.leader is not None
        while not self._stopping:
            _still_wanted()
            try:
                if self.leader.held:
                    if not await self.leader.renew():
                        log.warning("reconciler on %s lost the lease", self.owner[:8])
                elif not self._stopping and await self.leader.acquire():
                    log.info("reconciler on %s leads lattice %r", self.owner[:8], self.prefix)
                    self._wake.set()
                for lease in list(self._app_leases):
                    await lease.renew()
            except (nats.errors.Error, nats.js.errors.Error) as exc:  # NATS reconnecting: try again
                log.debug("lease renewal failed: %s", exc)
            await asyncio.sleep(self.settings.renew_s)

    async def _lead(self) -> None:
        while not self._stopping:
            _still_wanted()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the host's cancellation when
            # the event is set at the same moment, and this loop would then outlive its host
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if not self.leading or self._stopping:
                continue
            try:
                await self.reconcile_all()
            except (WaftError, nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("reconcile pass failed: %s", exc)
            except Exception:  # a bug here must not take the host (and what it serves) down with it
                log.exception("reconcile pass failed")

    async def reconcile_all(self) -> list[str]:
        """One pass over every deployed app; returns what was done, each line prefixed with the app."""
        store = await AppStore.open(self.nc, self.prefix)
        deployed = [r["name"] for r in await store.list() if r.get("deployed")]
        done: list[str] = []
        for name in deployed:
            if not self.leading:
                break
            assert self.leader is not None
            lease = Lease(self.leader.kv, f"app.{name}", self.owner)
            if not await lease.acquire():
                continue  # a deploy or undeploy is changing it right now
            self._app_leases.append(lease)
            try:
                record = await store.get(name)  # again, under the lease: undeploy may have come first
                if record is None or not record.get("deployed"):
                    continue
                manifest = manifest_of(record)
                try:
                    lines = await reconcile(self.ctl, manifest, state=await self.read_state(), keep_going=True,
                                            backoff=self.backoff)
                except WaftError as exc:
                    log.warning("%s: cannot reconcile: %s", name, exc)
                    continue
                for line in lines:
                    log.info("%s: %s", name, line)
                done += [f"{name}: {line}" for line in lines]
            finally:
                self._app_leases.remove(lease)
                await lease.release()
        self.passes += 1
        return done

    async def read_state(self) -> LatticeState:
        """The lattice as `reconcile` reads it, but a host that missed the ping is asked directly before
        it counts as gone: its instances would otherwise be started a second time elsewhere."""
        hosts = await self.ctl.get_hosts(self.settings.ping_s)
        answered = {h["id"] for h in hosts}
        for host_id, known in self._known.items():
            if host_id in answered:
                continue
            with contextlib.suppress(CtlError):
                inventory = await self.ctl.get_inventory(host_id)
                hosts.append({**known, "labels": inventory.get("labels", known.get("labels", {}))})
        inventories = {}
        for host in list(hosts):
            try:
                inventories[host["id"]] = await self.ctl.get_inventory(host["id"])
            except CtlError:
                hosts.remove(host)
        self._known = {h["id"]: h for h in hosts}
        if not hosts:
            raise CtlError(f"no host is running on lattice {self.prefix!r}")
        return LatticeState(sorted(hosts, key=lambda h: h["id"]), inventories)


async def leader_of(nc: NATS, prefix: str) -> str | None:
    """Which host leads the lattice's reconciler now (None: none yet, or its lease expired)."""
    try:
        kv = await nc.jetstream().key_value(lease_bucket(prefix))
    except nats.js.errors.BucketNotFoundError:
        return None
    return await Lease(kv, LEADER_KEY, "").holder()


__all__ = ["LEADER_KEY", "ComponentBackoff", "Lease", "LeaseHeld", "Reconciler", "ReconcilerSettings", "app_lease",
           "deploy_stored", "leader_of", "lease_bucket", "open_leases"]
