"""The control interface: `wasmbus.ctl.{prefix}.*` requests with JSON bodies (§5).

Commands are acknowledged at once with `{"accepted": bool, "error": str}` and carried out in the
host's task group; their outcome arrives as events, as in wasmCloud 0.x.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from waft.errors import WaftError
from waft.lattice import subjects
from waft.lattice.codec import DecodeError
from waft.lattice.types import LinkDefinition

log = logging.getLogger("waft.host.control")


def ack(error: str = "") -> bytes:
    return json.dumps({"accepted": not error, "error": error}).encode()


class BadRequest(WaftError, ValueError):
    """A control request we cannot act on; the message goes back in the ack."""


class Controlled(Protocol):
    """What the control interface may ask of a host: the commands and queries of wasmCloud's ctl API.

    Narrow on purpose: control speaks to a host only through these, never through its internals, so
    either can change without the other (the host implements it; tests may drive control with another).
    """

    host_id: str
    labels: dict[str, str]

    def describe(self) -> dict[str, Any]: ...
    def inventory(self) -> dict[str, Any]: ...
    async def publish_heartbeat(self) -> None: ...
    def claims(self) -> list[dict[str, Any]]: ...
    def links(self) -> list[LinkDefinition]: ...
    async def put_link(self, link: LinkDefinition) -> None: ...
    async def delete_link(self, actor_id: str, contract_id: str, link_name: str) -> bool: ...
    def runs_actor(self, public_key: str) -> bool: ...
    def runs_provider(self, *, link_name: str, image_ref: str = "", public_key: str = "") -> bool: ...
    async def start_actor(self, image_ref: str, count: int = 1,
                          annotations: dict[str, str] | None = None) -> object: ...
    async def stop_actor(self, public_key: str, count: int = 0,
                         annotations: dict[str, str] | None = None) -> int: ...
    async def scale_actor(self, public_key: str, image_ref: str, count: int) -> None: ...
    async def start_provider(self, provider_ref: str, link_name: str = "default", config_json: str = "",
                             annotations: dict[str, str] | None = None) -> object: ...
    async def stop_provider(self, public_key: str, link_name: str) -> bool: ...
    def background(self, work: Coroutine[Any, Any, Any]) -> None: ...
    def stop(self) -> None: ...


def _body(msg: Msg) -> dict[str, Any]:
    if not msg.data:
        return {}
    try:
        body = json.loads(msg.data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _require(body: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if not body.get(k)]
    if missing:
        raise BadRequest(f"request is missing {', '.join(missing)}")


class ControlInterface:
    def __init__(self, host: Controlled, nc: NATS, prefix: str) -> None:
        self.host = host
        self.nc = nc
        self.prefix = prefix
        self._subs: list[Any] = []

    async def subscribe(self) -> None:
        prefix, hid = self.prefix, self.host.host_id
        group = subjects.ctl(prefix)
        routes: list[tuple[str, str | None, Callable[[Msg], Awaitable[None]]]] = [
            (subjects.ctl(prefix, "ping", "hosts"), None, self._ping),
            (subjects.ctl(prefix, "get", hid, "inv"), None, self._inventory),
            (subjects.ctl(prefix, "get", "claims"), group, self._claims),
            (subjects.ctl(prefix, "get", "links"), group, self._links),
            (subjects.ctl(prefix, "linkdefs", "put"), group, self._link_put),
            (subjects.ctl(prefix, "linkdefs", "del"), group, self._link_del),
            (subjects.ctl(prefix, "cmd", hid, "*"), None, self._command),
            (subjects.ctl(prefix, "auction", "actor"), None, self._auction_actor),
            (subjects.ctl(prefix, "auction", "provider"), None, self._auction_provider),
        ]
        for subject, queue, handler in routes:
            self._subs.append(await self.nc.subscribe(subject, queue=queue or "", cb=self._guard(handler)))

    async def unsubscribe(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    def _guard(self, handler: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
        """Bad requests get an ack naming the problem; nothing a client sends can kill the host."""

        async def guarded(msg: Msg) -> None:
            try:
                await handler(msg)
            except (BadRequest, DecodeError, ValueError, TypeError) as exc:
                await self._reply(msg, ack(str(exc)))
            except Exception as exc:
                log.exception("control request on %s failed", msg.subject)
                await self._reply(msg, ack(f"{type(exc).__name__}: {exc}"))

        return guarded

    @staticmethod
    async def _reply(msg: Msg, data: bytes) -> None:
        if msg.reply:
            await msg.respond(data)

    # ------------------------------------------------------------------ queries
    async def _ping(self, msg: Msg) -> None:
        await self._reply(msg, json.dumps(self.host.describe()).encode())
        await self.host.publish_heartbeat()

    async def _inventory(self, msg: Msg) -> None:
        await self._reply(msg, json.dumps(self.host.inventory()).encode())

    async def _claims(self, msg: Msg) -> None:
        await self._reply(msg, json.dumps({"claims": self.host.claims()}).encode())

    async def _links(self, msg: Msg) -> None:
        links = [ld.to_wire() for ld in self.host.links()]
        await self._reply(msg, json.dumps({"links": links}).encode())

    # ------------------------------------------------------------------ links
    async def _link_put(self, msg: Msg) -> None:
        body = _body(msg)
        _require(body, "actor_id", "provider_id", "contract_id")
        link = LinkDefinition.from_wire({**body, "id": None})
        await self.host.put_link(link)
        await self._reply(msg, ack())

    async def _link_del(self, msg: Msg) -> None:
        body = _body(msg)
        _require(body, "actor_id", "contract_id")
        found = await self.host.delete_link(body["actor_id"], body["contract_id"], body.get("link_name") or "default")
        await self._reply(msg, ack("" if found else "no such link definition"))

    # ------------------------------------------------------------------ commands
    async def _command(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        body = _body(msg)
        handler = {"la": self._launch_actor, "sa": self._stop_actor, "scale": self._scale_actor,
                   "lp": self._launch_provider, "sp": self._stop_provider, "stop": self._stop_host}.get(verb)
        if handler is None:
            raise BadRequest(f"unknown command {verb!r}")
        await handler(msg, body)

    def _background(self, work: Awaitable[Any], what: str) -> None:
        """Run accepted work after the ack; failures surface as *_failed events, as 0.x does."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("%s failed: %s", what, exc)

        self.host.background(run())

    async def _launch_actor(self, msg: Msg, body: dict[str, Any]) -> None:
        _require(body, "actor_ref")
        count = int(body.get("count") or 1)
        if count < 1:
            raise BadRequest("count must be at least 1")
        await self._reply(msg, ack())
        self._background(self.host.start_actor(body["actor_ref"], count, body.get("annotations")),
                         f"starting actor {body['actor_ref']}")

    async def _stop_actor(self, msg: Msg, body: dict[str, Any]) -> None:
        _require(body, "actor_ref")
        if not self.host.runs_actor(body["actor_ref"]):
            raise BadRequest(f"actor {body['actor_ref']} is not running on this host")
        await self._reply(msg, ack())
        self._background(self.host.stop_actor(body["actor_ref"], int(body.get("count") or 0),
                                              body.get("annotations")), "stopping actor")

    async def _scale_actor(self, msg: Msg, body: dict[str, Any]) -> None:
        _require(body, "actor_id")
        count = body.get("count")
        if not isinstance(count, int) or count < 0:
            raise BadRequest("count must be a non-negative integer")
        if not self.host.runs_actor(body["actor_id"]) and not body.get("actor_ref"):
            raise BadRequest(f"actor {body['actor_id']} is not running here and no actor_ref was given")
        await self._reply(msg, ack())
        self._background(self.host.scale_actor(body["actor_id"], body.get("actor_ref") or "", count), "scaling actor")

    async def _launch_provider(self, msg: Msg, body: dict[str, Any]) -> None:
        _require(body, "provider_ref")
        link_name = body.get("link_name") or "default"
        if self.host.runs_provider(image_ref=body["provider_ref"], link_name=link_name):
            raise BadRequest("Provider is already running on this host")
        await self._reply(msg, ack())
        self._background(self.host.start_provider(body["provider_ref"], link_name, body.get("configuration") or "",
                                                  body.get("annotations")), "starting provider")

    async def _stop_provider(self, msg: Msg, body: dict[str, Any]) -> None:
        _require(body, "provider_ref")
        link_name = body.get("link_name") or "default"
        if not self.host.runs_provider(public_key=body["provider_ref"], link_name=link_name):
            raise BadRequest(f"provider {body['provider_ref']} on link {link_name!r} is not running here")
        await self._reply(msg, ack())
        self._background(self.host.stop_provider(body["provider_ref"], link_name), "stopping provider")

    async def _stop_host(self, msg: Msg, body: dict[str, Any]) -> None:
        await self._reply(msg, ack())
        self.host.stop()

    # ------------------------------------------------------------------ auctions
    async def _auction_actor(self, msg: Msg) -> None:
        body = _body(msg)
        constraints = body.get("constraints") or {}
        if constraints.items() <= self.host.labels.items():
            await self._reply(msg, json.dumps({"actor_ref": body.get("actor_ref"), "constraints": constraints,
                                               "host_id": self.host.host_id}).encode())

    async def _auction_provider(self, msg: Msg) -> None:
        body = _body(msg)
        constraints = body.get("constraints") or {}
        link_name = body.get("link_name") or "default"
        busy = self.host.runs_provider(image_ref=body.get("provider_ref") or "", link_name=link_name)
        if not busy and constraints.items() <= self.host.labels.items():
            await self._reply(msg, json.dumps({"provider_ref": body.get("provider_ref"), "link_name": link_name,
                                               "constraints": constraints, "host_id": self.host.host_id}).encode())
