"""CloudEvents on `wasmbus.evt.{prefix}`, named and shaped as wasmCloud 0.x publishes them (§5.1)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from waft.lattice import subjects

log = logging.getLogger("waft.host.events")
EVENT_TYPE_PREFIX = "com.wasmcloud.lattice."


def cloud_event(name: str, source: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "type": f"{EVENT_TYPE_PREFIX}{name}",
        "source": source,
        "datacontenttype": "application/json",
        "id": str(uuid.uuid4()),
        "data": data,
    }


class EventPublisher:
    """Publishes events with the host id as `source` (wash filters on it)."""

    def __init__(self, nc: NATS, prefix: str, host_id: str) -> None:
        self._nc = nc
        self._subject = subjects.events(prefix)
        self._rpc_subject = subjects.rpc_events(prefix)
        self._host_id = host_id

    async def publish(self, name: str, data: dict[str, Any]) -> None:
        await self._send(self._subject, cloud_event(name, self._host_id, data))

    async def publish_rpc(self, name: str, data: dict[str, Any]) -> None:
        await self._send(self._rpc_subject, cloud_event(name, self._host_id, data))

    async def _send(self, subject: str, event: dict[str, Any]) -> None:
        try:
            await self._nc.publish(subject, json.dumps(event).encode())
        except nats.errors.Error as exc:  # events are best effort; a NATS outage must not fail a call
            log.warning("could not publish %s: %s", event["type"], exc)
