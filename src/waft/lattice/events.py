"""CloudEvents on `wasmbus.evt.{prefix}`, named and shaped as wasmCloud 0.x publishes them (§5.1).

One constructor per event builds it, and `parse_event` reads any of them back, so the host, the
supervisor, `waft ctl`, the reconciler and the dashboard agree on every field: wash and wadm read
these events too, so names and fields follow wasmCloud's. Waft adds fields where 0.x said too little
(the health events carry the provider's `message`, `healthy` and structured `details`) and one event,
`health_check_status` (the name later wasmCloud hosts and wadm use): a provider's health report
changed while its healthy flag did not, e.g. a model went from loading to ready.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from waft.claims.actor import ActorClaims
from waft.errors import WaftError
from waft.lattice import subjects
from waft.lattice.health import HealthCheckResponse
from waft.lattice.types import LinkDefinition

log = logging.getLogger("waft.lattice.events")
EVENT_TYPE_PREFIX = "com.wasmcloud.lattice."

HOST_STARTED = "host_started"
HOST_STOPPED = "host_stopped"
HOST_HEARTBEAT = "host_heartbeat"
ACTOR_STARTED = "actor_started"
ACTOR_START_FAILED = "actor_start_failed"
ACTOR_STOPPED = "actor_stopped"
PROVIDER_STARTED = "provider_started"
PROVIDER_START_FAILED = "provider_start_failed"
PROVIDER_STOPPED = "provider_stopped"
HEALTH_CHECK_PASSED = "health_check_passed"
HEALTH_CHECK_FAILED = "health_check_failed"
HEALTH_CHECK_STATUS = "health_check_status"
LINKDEF_SET = "linkdef_set"
LINKDEF_DELETED = "linkdef_deleted"
HEALTH_EVENTS = frozenset({HEALTH_CHECK_PASSED, HEALTH_CHECK_FAILED, HEALTH_CHECK_STATUS})


class EventError(WaftError, ValueError):
    """Bytes on the event subject that are not a CloudEvent."""


@dataclass(frozen=True)
class Event:
    """One lattice event: `kind` is the name after `com.wasmcloud.lattice.`, `source` the host that sent it.

    The properties read the fields several events share, with the defaults 0.x implies (a missing
    link name is `default`), so no reader indexes `data` with its own idea of the shape.
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"))

    def to_cloud_event(self, source: str | None = None) -> dict[str, Any]:
        return {"specversion": "1.0", "time": self.time, "type": f"{EVENT_TYPE_PREFIX}{self.kind}",
                "source": self.source if source is None else source, "datacontenttype": "application/json",
                "id": self.id, "data": self.data}

    def encode(self, source: str | None = None) -> bytes:
        return json.dumps(self.to_cloud_event(source), default=str).encode()

    def matches(self, **values: Any) -> bool:
        return all(self.data.get(k) == v for k, v in values.items())

    def _text(self, key: str, default: str = "") -> str:
        value = self.data.get(key)
        return default if value in (None, "") else str(value)

    @property
    def public_key(self) -> str:
        return self._text("public_key")

    @property
    def link_name(self) -> str:
        return self._text("link_name", "default")

    @property
    def contract_id(self) -> str:
        return self._text("contract_id")

    @property
    def instance_id(self) -> str:
        return self._text("instance_id")

    @property
    def image_ref(self) -> str:
        """The reference an actor or provider was started from (the *_failed events call it by kind)."""
        return self._text("image_ref") or self._text("actor_ref") or self._text("provider_ref")

    @property
    def error(self) -> str:
        return self._text("error")

    @property
    def reason(self) -> str:
        return self._text("reason")

    @property
    def annotations(self) -> dict[str, str]:
        value = self.data.get("annotations")
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def claims(self) -> dict[str, Any]:
        value = self.data.get("claims")
        return dict(value) if isinstance(value, Mapping) else {}

    @property
    def health(self) -> HealthCheckResponse | None:
        """The provider's report, for the three health events; None for any other."""
        if self.kind not in HEALTH_EVENTS:
            return None
        healthy = self.data.get("healthy")
        if healthy is None:  # a 0.x host's passed/failed events: the kind is the flag
            healthy = self.kind == HEALTH_CHECK_PASSED
        return HealthCheckResponse.from_wire({**self.data, "healthy": healthy})


def parse_event(data: bytes | str) -> Event:
    """Read one CloudEvent; a type outside `com.wasmcloud.lattice.` keeps its last dotted part as kind."""
    try:
        wire = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventError(f"event is not JSON: {exc}") from None
    if not isinstance(wire, dict) or not isinstance(wire.get("type"), str):
        raise EventError("event is not a CloudEvent: expected an object with a string `type`")
    kind = wire["type"]
    kind = kind[len(EVENT_TYPE_PREFIX):] if kind.startswith(EVENT_TYPE_PREFIX) else kind.rsplit(".", 1)[-1]
    body = wire.get("data")
    return Event(kind, dict(body) if isinstance(body, Mapping) else {}, str(wire.get("source") or ""),
                 str(wire.get("id") or ""), str(wire.get("time") or ""))


# --------------------------------------------------------------------------------------------- hosts

def host_started(labels: Mapping[str, str], friendly_name: str) -> Event:
    return Event(HOST_STARTED, {"labels": dict(labels), "friendly_name": friendly_name})


def host_stopped(labels: Mapping[str, str]) -> Event:
    return Event(HOST_STOPPED, {"labels": dict(labels)})


def host_heartbeat(*, actors: Iterable[tuple[str, str]], providers: Iterable[tuple[str, str, str, str]],
                   labels: Mapping[str, str], friendly_name: str, version: str, uptime_s: float,
                   uptime_human: str) -> Event:
    """`actors`: (public key, instance id) per instance; `providers`: (public key, link, contract, instance id)."""
    return Event(HOST_HEARTBEAT, {
        "actors": [{"public_key": pk, "instance_id": iid} for pk, iid in actors],
        "providers": [{"public_key": pk, "link_name": link, "contract_id": contract, "instance_id": iid}
                      for pk, link, contract, iid in providers],
        "labels": dict(labels), "friendly_name": friendly_name, "version": version,
        "uptime_seconds": int(uptime_s), "uptime_human": uptime_human})


# -------------------------------------------------------------------------------------------- actors

def actor_started(claims: ActorClaims, *, image_ref: str, instance_id: str, annotations: Mapping[str, str],
                  api_version: int | str) -> Event:
    return Event(ACTOR_STARTED, {
        "public_key": claims.subject, "image_ref": image_ref, "api_version": api_version,
        "instance_id": instance_id, "annotations": dict(annotations),
        "claims": {"call_alias": claims.call_alias, "caps": list(claims.caps), "issuer": claims.issuer,
                   "tags": list(claims.tags), "name": claims.name, "version": claims.ver,
                   "revision": claims.rev, "not_before_human": "immediately",
                   "expires_human": "never" if claims.expires is None else str(claims.expires)}})


def actor_start_failed(actor_ref: str, error: str) -> Event:
    return Event(ACTOR_START_FAILED, {"actor_ref": actor_ref, "error": error})


def actor_stopped(public_key: str, instance_id: str) -> Event:
    return Event(ACTOR_STOPPED, {"public_key": public_key, "instance_id": instance_id})


# ----------------------------------------------------------------------------------------- providers

def provider_started(*, public_key: str, image_ref: str, link_name: str, contract_id: str, instance_id: str,
                     annotations: Mapping[str, str], name: str, issuer: str = "", tags: str = "",
                     version: str = "") -> Event:
    return Event(PROVIDER_STARTED, {
        "public_key": public_key, "image_ref": image_ref, "link_name": link_name, "contract_id": contract_id,
        "instance_id": instance_id, "annotations": dict(annotations),
        "claims": {"issuer": issuer, "tags": tags, "name": name, "version": version,
                   "not_before_human": "immediately", "expires_human": "never"}})


def provider_start_failed(provider_ref: str, link_name: str, error: str) -> Event:
    return Event(PROVIDER_START_FAILED, {"provider_ref": provider_ref, "link_name": link_name, "error": error})


def provider_stopped(*, public_key: str, link_name: str, contract_id: str, instance_id: str, reason: str) -> Event:
    return Event(PROVIDER_STOPPED, {"public_key": public_key, "link_name": link_name, "contract_id": contract_id,
                                    "instance_id": instance_id, "reason": reason})


def _health(kind: str, public_key: str, link_name: str, contract_id: str, report: HealthCheckResponse) -> Event:
    return Event(kind, {"public_key": public_key, "link_name": link_name, "contract_id": contract_id,
                        "healthy": report.healthy, "message": report.message, "details": report.details})


def health_check_passed(public_key: str, link_name: str, contract_id: str, report: HealthCheckResponse) -> Event:
    return _health(HEALTH_CHECK_PASSED, public_key, link_name, contract_id, report)


def health_check_failed(public_key: str, link_name: str, contract_id: str, report: HealthCheckResponse) -> Event:
    return _health(HEALTH_CHECK_FAILED, public_key, link_name, contract_id, report)


def health_check_status(public_key: str, link_name: str, contract_id: str, report: HealthCheckResponse) -> Event:
    return _health(HEALTH_CHECK_STATUS, public_key, link_name, contract_id, report)


# --------------------------------------------------------------------------------------------- links

def linkdef_set(link: LinkDefinition) -> Event:
    return Event(LINKDEF_SET, link.to_wire())


def linkdef_deleted(link: LinkDefinition) -> Event:
    return Event(LINKDEF_DELETED, link.to_wire())


# ---------------------------------------------------------------------------------------- publishing

class EventPublisher:
    """Publishes events with the host id as `source` (wash filters on it)."""

    def __init__(self, nc: NATS, prefix: str, host_id: str) -> None:
        self._nc = nc
        self._subject = subjects.events(prefix)
        self._host_id = host_id

    async def publish(self, event: Event) -> None:
        try:
            await self._nc.publish(self._subject, event.encode(source=self._host_id))
        except nats.errors.Error as exc:  # events are best effort; a NATS outage must not fail a call
            log.warning("could not publish %s: %s", event.kind, exc)
