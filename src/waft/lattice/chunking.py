"""Payloads bigger than a NATS message travel through JetStream object store (§2.5).

Bucket = lattice prefix; key = invocation id for requests, `{id}-r` for responses; the reader
deletes the object once it has it, so the store only holds payloads in flight.
"""

from __future__ import annotations

import asyncio

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.object_store import ObjectStore

from waft.errors import WaftError
from waft.lattice.subjects import object_store_bucket


class MissingChunk(WaftError, LookupError):
    """A message says its payload is in object store, but it is not there (expired, deleted, forged)."""


def response_key(invocation_id: str) -> str:
    return f"{invocation_id}-r"


class ChunkStore:
    """Lazily opened object store of one lattice."""

    def __init__(self, nc: NATS, prefix: str) -> None:
        self._nc = nc
        self._bucket = object_store_bucket(prefix)
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ObjectStore:
        async with self._lock:
            if self._store is None:
                js = self._nc.jetstream()
                try:
                    self._store = await js.object_store(self._bucket)
                except nats.js.errors.BucketNotFoundError:
                    self._store = await js.create_object_store(self._bucket)
            return self._store

    async def put(self, key: str, data: bytes) -> None:
        store = await self._open()
        await store.put(key, data)

    async def take(self, key: str, expected_length: int) -> bytes:
        """Fetch and delete; the length check catches a truncated or substituted object early."""
        store = await self._open()
        try:
            result = await store.get(key)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
            raise MissingChunk(f"chunked payload {key!r} is missing from object store") from None
        data = result.data or b""
        try:
            await store.delete(key)
        except nats.js.errors.Error:
            pass  # deleting is housekeeping; the payload is already ours
        if len(data) != expected_length:
            raise MissingChunk(f"chunked payload {key!r} has {len(data)} bytes, expected {expected_length}")
        return data
