"""The lattice cache: link definitions and claims every host of a lattice agrees on.

As in wasmCloud 0.x (§5.2) it is a JetStream stream, `LATTICECACHE_{prefix}` over `lc.{prefix}.>`,
one message kept per subject. Every host follows it with an ordered consumer, so a link put through
any host (or before a host joined) reaches all of them and survives host restarts.

Claims are removed when the last host running an actor (or provider) stops it: 0.x left them for ever, so
`get claims` listed, and call aliases resolved to, actors nobody ran. Each host keeps a presence entry
`lc.{prefix}.running.{public_key}.{host_id}` while it runs one; a host that stops its last instance purges
its own entry, then, if no other presence is left at the server, writes an empty claims message (a
tombstone) conditional on the claims being the ones it looked at, so a host starting the actor meanwhile
(presence first, then claims) always keeps them. A claim put again (a new revision) supersedes the old
one in place: the stream keeps one message per subject.

A host that is SIGKILLed (or loses its machine) never purges its presence entries, so every host re-puts
its own at each heartbeat and `sweep` removes, on behalf of the dead, entries not renewed for
`stale_heartbeats` of the interval their writer named; the usual release then tombstones the claims if no
live host is left. Freshness is judged by when this host saw an entry arrive (its own clock only, so clock
skew between machines cannot make a live host look dead); entries already there when it joined count from
then. Before releasing one, the sweeper asks the server for the entry's last message: if its sequence is
not the one it saw, the entry was renewed and only this host's consumer missed it (an ordered consumer
stalls while a cluster changes), so nothing is swept. A host that was only frozen re-puts its presence and
claims at its next heartbeat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.js.api as js_api
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft.errors import WaftError
from waft.lattice import subjects
from waft.lattice.codec import DecodeError
from waft.lattice.replication import create_replicated, too_many_replicas, wait_jetstream, wanted_replicas
from waft.lattice.types import LinkDefinition

log = logging.getLogger("waft.host.cache")


class AmbiguousAlias(WaftError):
    """Two actors in the lattice claim one call alias."""


class LatticeCache:
    def __init__(self, nc: NATS, prefix: str) -> None:
        self._nc = nc
        self._prefix = prefix
        self.links: dict[tuple[str, str, str], LinkDefinition] = {}
        self.claims: dict[str, dict[str, str]] = {}
        self._sub: Any = None
        #: (public key, host id) -> (monotonic time this host last saw the entry, its writer's interval in s,
        #: the entry's stream sequence then)
        self.presence: dict[tuple[str, str], tuple[float, float, int]] = {}
        self.on_change: Callable[[], None] = lambda: None

    async def start(self, jetstream_wait_s: float = 60.0) -> None:
        await wait_jetstream(self._nc, jetstream_wait_s)  # a cluster still electing its leader
        js = self._nc.jetstream()
        stream = js_api.StreamConfig(
            name=subjects.lattice_cache_stream(self._prefix),
            subjects=[subjects.lattice_cache(self._prefix, ">")],
            storage=js_api.StorageType.FILE, max_msgs_per_subject=1, num_replicas=wanted_replicas(self._nc))

        async def create(replicas: int) -> None:
            stream.num_replicas = replicas
            await js.add_stream(stream)

        try:
            await create_replicated(create, stream.num_replicas or 1)
        except nats.js.errors.BadRequestError:
            stream.num_replicas = wanted_replicas(self._nc)
            await self._reconcile(js, stream)  # there already: by another host, or with another config
        self._sub = await js.subscribe(subjects.lattice_cache(self._prefix, ">"), cb=self._on_message,
                                       ordered_consumer=True,
                                       deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT)

    async def _reconcile(self, js: Any, wanted: js_api.StreamConfig) -> None:
        """A stream kept with other settings (another version, a hand-made one) is brought to ours: silently
        keeping, say, several messages per subject or other subjects would make hosts disagree."""
        info = await js.stream_info(wanted.name)
        current = info.config
        fields = ("subjects", "max_msgs_per_subject", "storage")
        differs = [f for f in fields if getattr(current, f) != getattr(wanted, f)]
        if (current.num_replicas or 1) < (wanted.num_replicas or 1):  # raised, never lowered (replication.py)
            differs.append("num_replicas")
        if not differs:
            return
        if current.storage != wanted.storage:  # JetStream cannot change a stream's storage in place
            log.error("lattice cache stream %s uses %s storage, not %s; leaving it (recreate it to change)",
                      wanted.name, current.storage, wanted.storage)
            differs.remove("storage")
            if not differs:
                return
        for f in differs:
            setattr(current, f, getattr(wanted, f))
        try:
            await js.update_stream(current)
        except nats.js.errors.Error as exc:
            if "num_replicas" not in differs or not too_many_replicas(exc):
                raise
            log.warning("lattice cache stream %s: %s; keeping its replicas for now", wanted.name, exc)
            return
        log.warning("lattice cache stream %s had other %s; reconciled", wanted.name, ", ".join(differs))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        try:
            body = json.loads(msg.data) if msg.data else {}
        except ValueError:
            log.warning("ignoring unreadable cache entry on %s", msg.subject)
            return
        if len(parts) < 4 or not isinstance(body, dict):
            return
        kind = parts[2]
        if kind == "running" and len(parts) >= 5:
            self.presence[(parts[3], parts[4])] = (time.monotonic(), _interval(body), _sequence(msg))
            return
        if kind == "linkdefs":
            self._apply_link(body)
        elif kind == "claims":
            if body:
                self.claims[parts[3]] = {str(k): str(v) for k, v in body.items()}
            else:  # the tombstone of the last host that ran it
                self.claims.pop(parts[3], None)
        self.on_change()

    def _apply_link(self, body: dict[str, Any]) -> None:
        try:
            link = LinkDefinition.from_wire(body)
        except DecodeError:
            return
        if body.get("deleted"):
            current = self.links.get(link.key)
            if current is not None and current.id == link.id:
                del self.links[link.key]
        else:
            self.links[link.key] = link

    async def put_link(self, link: LinkDefinition) -> LinkDefinition | None:
        """Record a link; returns the link it replaced, whose cache entry is tombstoned."""
        previous = self.links.get(link.key)
        self.links[link.key] = link
        if previous is not None and previous.id != link.id:
            await self._publish(("linkdefs", previous.id), {**previous.to_wire(), "deleted": True})
        await self._publish(("linkdefs", link.id), {**link.to_wire(), "deleted": False})
        return previous

    async def delete_link(self, actor_id: str, contract_id: str, link_name: str) -> LinkDefinition | None:
        link = self.links.pop((actor_id, contract_id, link_name), None)
        if link is not None:
            await self._publish(("linkdefs", link.id), {**link.to_wire(), "deleted": True})
        return link

    async def put_claims(self, public_key: str, claims: dict[str, str]) -> None:
        self.claims[public_key] = claims
        await self._publish(("claims", public_key), claims)

    async def hold(self, public_key: str, host_id: str, every_s: float = 0.0) -> None:
        """Say this host runs `public_key`; call before `put_claims` (see the module docstring for why).
        `every_s`: how often this host renews the entry (0: never; it is then never swept)."""
        await self._publish(("running", public_key, host_id), {"host_id": host_id, "every_s": every_s})

    async def sweep(self, own_host: str, stale_heartbeats: int) -> list[tuple[str, str]]:
        """Release the presence entries of other hosts not renewed for `stale_heartbeats` of their intervals
        (their claims go with the last one); the (public key, host id) pairs swept."""
        now = time.monotonic()
        stale = [pair for pair, (seen, every, _) in self.presence.items()
                 if pair[1] != own_host and every > 0 and now - seen > stale_heartbeats * every]
        swept = []
        for public_key, host_id in stale:
            if await self._renewed_meanwhile(public_key, host_id):
                continue
            removed = await self.release(public_key, host_id)  # forgets the entry too
            swept.append((public_key, host_id))
            log.warning("host %s stopped renewing its presence for %s (%d heartbeats); released it%s",
                        host_id, public_key, stale_heartbeats, ", and its claims" if removed else "")
        return swept

    async def _renewed_meanwhile(self, public_key: str, host_id: str) -> bool:
        """Whether the server holds a newer presence message than the one this host saw (then remembered as
        seen now); on an error, True: a sweep must never act on a view it could not check."""
        subject = subjects.lattice_cache(self._prefix, "running", public_key, host_id)
        judged = self.presence.get((public_key, host_id))  # what the stale verdict was made from
        try:
            last = await self._nc.jetstream().get_last_msg(subjects.lattice_cache_stream(self._prefix), subject)
        except nats.js.errors.NotFoundError:
            return False  # purged already: release to tombstone the claims if nobody else runs it
        except (TimeoutError, nats.errors.Error) as exc:
            log.info("cannot check the presence of %s on %s (%s); not sweeping it now", public_key, host_id, exc)
            return True
        seen = self.presence.get((public_key, host_id))
        if seen is not None and seen != judged:
            return True  # this host's consumer saw a renewal while the server was asked
        if seen is None or last.seq == seen[2]:
            return False
        try:
            body = json.loads(last.data) if last.data else {}
        except ValueError:
            body = {}
        self.presence[(public_key, host_id)] = (time.monotonic(), _interval(body), last.seq or 0)
        return True

    async def release(self, public_key: str, host_id: str) -> bool:
        """This host no longer runs `public_key`; remove its claims if no other host does. True if removed."""
        js = self._nc.jetstream()
        stream = subjects.lattice_cache_stream(self._prefix)
        claims_subject = subjects.lattice_cache(self._prefix, "claims", public_key)
        self.presence.pop((public_key, host_id), None)
        try:
            await js.purge_stream(stream, subject=subjects.lattice_cache(self._prefix, "running", public_key, host_id))
            try:
                last = await js.get_last_msg(stream, claims_subject)
            except nats.js.errors.NotFoundError:
                return False
            others = await js.stream_info(stream, subjects_filter=subjects.lattice_cache(
                self._prefix, "running", public_key, "*"))
            if others.state.subjects or not last.data:
                return False
            await js.publish(claims_subject, b"", timeout=5,
                             headers={"Nats-Expected-Last-Subject-Sequence": str(last.seq)})
        except nats.js.errors.APIError as exc:  # 10071: the claims changed since we looked: someone started it
            log.info("claims of %s kept: %s", public_key, exc)
            return False
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("could not release %s in the lattice cache (%s); its claims may stay", public_key, exc)
            return False
        self.claims.pop(public_key, None)
        self.on_change()
        return True

    def find_alias(self, alias: str) -> str | None:
        """The one actor claiming `alias`; None when none does. Two claiming it is an error, never a guess:
        the first match would depend on which claims a host happened to see first."""
        owners = self.alias_owners(alias)
        if len(owners) > 1:
            raise AmbiguousAlias(f"call alias {alias!r} is claimed by {len(owners)} actors ({', '.join(owners)})")
        return owners[0] if owners else None

    def alias_owners(self, alias: str) -> list[str]:
        return sorted(k for k, claims in self.claims.items() if alias and claims.get("call_alias") == alias)

    def links_for_provider(self, provider_id: str, link_name: str) -> list[LinkDefinition]:
        return [ld for ld in self.links.values() if ld.provider_id == provider_id and ld.link_name == link_name]

    async def _publish(self, parts: tuple[str, ...], body: dict[str, Any]) -> None:
        js = self._nc.jetstream()
        try:
            await js.publish(subjects.lattice_cache(self._prefix, *parts), json.dumps(body).encode(), timeout=5)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("lattice cache write failed (%s); this host keeps its own copy", exc)


def _interval(body: object) -> float:
    every = body.get("every_s") if isinstance(body, dict) else None
    return float(every) if isinstance(every, int | float) and every > 0 else 0.0


def _sequence(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except (AttributeError, ValueError, TypeError, nats.errors.Error):
        return 0
