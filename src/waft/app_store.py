"""Which applications are deployed on a lattice: a JetStream key-value bucket, one key per app.

It lives on the lattice, not on one machine, so any CLI or dashboard that reaches NATS sees the same
list, and a restarted host finds it again.
"""

from __future__ import annotations

import json
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue


def bucket_name(prefix: str) -> str:
    return f"waft_apps_{prefix}"


class AppStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, nc: NATS, prefix: str) -> AppStore:
        """The lattice's bucket, created on first use."""
        js = nc.jetstream()
        try:
            return cls(await js.key_value(bucket_name(prefix)))
        except nats.js.errors.BucketNotFoundError:
            return cls(await js.create_key_value(bucket=bucket_name(prefix)))

    async def put(self, name: str, record: dict[str, Any]) -> None:
        await self.kv.put(name, json.dumps(record).encode())

    async def delete(self, name: str) -> bool:
        """Forget `name`; False when it was not there."""
        try:
            await self.kv.delete(name)
        except nats.js.errors.KeyNotFoundError:
            return False
        return True

    async def list(self) -> list[dict[str, Any]]:
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        records = []
        for key in keys:
            entry = await self.kv.get(key)
            records.append(json.loads(entry.value or b"{}"))
        return records
