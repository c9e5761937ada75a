"""The lattice cache: link definitions and claims every host of a lattice agrees on.

As in wasmCloud 0.x (§5.2) it is a JetStream stream, `LATTICECACHE_{prefix}` over `lc.{prefix}.>`,
one message kept per subject. Every host follows it with an ordered consumer, so a link put through
any host (or before a host joined) reaches all of them and survives host restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import nats.js.api as js_api
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft.lattice import subjects
from waft.lattice.codec import DecodeError
from waft.lattice.types import LinkDefinition

log = logging.getLogger("waft.host.cache")


class LatticeCache:
    def __init__(self, nc: NATS, prefix: str) -> None:
        self._nc = nc
        self._prefix = prefix
        self.links: dict[tuple[str, str, str], LinkDefinition] = {}
        self.claims: dict[str, dict[str, str]] = {}
        self._sub: Any = None
        self.on_change: Callable[[], None] = lambda: None

    async def start(self) -> None:
        js = self._nc.jetstream()
        stream = js_api.StreamConfig(
            name=subjects.lattice_cache_stream(self._prefix),
            subjects=[subjects.lattice_cache(self._prefix, ">")],
            storage=js_api.StorageType.FILE, max_msgs_per_subject=1)
        try:
            await js.add_stream(stream)
        except nats.js.errors.BadRequestError:
            pass  # another host created it first with the same config
        self._sub = await js.subscribe(subjects.lattice_cache(self._prefix, ">"), cb=self._on_message,
                                       ordered_consumer=True,
                                       deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT)

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
        if kind == "linkdefs":
            self._apply_link(body)
        elif kind == "claims":
            self.claims[parts[3]] = {str(k): str(v) for k, v in body.items()}
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

    def find_alias(self, alias: str) -> str | None:
        for public_key, claims in self.claims.items():
            if alias and claims.get("call_alias") == alias:
                return public_key
        return None

    def links_for_provider(self, provider_id: str, link_name: str) -> list[LinkDefinition]:
        return [ld for ld in self.links.values() if ld.provider_id == provider_id and ld.link_name == link_name]

    async def _publish(self, parts: tuple[str, ...], body: dict[str, Any]) -> None:
        js = self._nc.jetstream()
        try:
            await js.publish(subjects.lattice_cache(self._prefix, *parts), json.dumps(body).encode(), timeout=5)
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("lattice cache write failed (%s); this host keeps its own copy", exc)
