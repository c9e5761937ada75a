"""Payloads bigger than a NATS message travel through JetStream object store (§2.5).

Bucket = lattice prefix; key = invocation id for requests, `{id}-r` for responses; the reader
deletes the object once it has it, so the store only holds payloads in flight. Two things keep it
that way when a reader never comes or cannot be trusted:

- the bucket has a TTL (`WAFT_CHUNK_TTL_S`, 10 minutes; far above any RPC timeout), so a payload
  whose caller gave up, or whose receiver died, expires instead of filling the server's disk;
- a request's payload is deleted only once its invocation has been verified (`LatticeRpc.receive`),
  so an unsigned invocation that names someone else's payload cannot make it vanish.

On a NATS cluster the bucket keeps `min(3, members)` replicas (`replication.py`), so a payload in flight
survives the loss of the member that took it.
"""

from __future__ import annotations

import asyncio
import logging

import nats.js.api as js_api
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.object_store import OBJ_STREAM_TEMPLATE, ObjectStore

from waft.config import int_setting
from waft.errors import WaftError
from waft.lattice.replication import create_replicated, raise_replicas, wanted_replicas
from waft.lattice.subjects import object_store_bucket

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 600


class MissingChunk(WaftError, LookupError):
    """A message says its payload is in object store, but it is not there (expired, deleted, forged)."""


def response_key(invocation_id: str) -> str:
    return f"{invocation_id}-r"


def chunk_ttl_s() -> int:
    return int_setting("chunk_ttl_s", DEFAULT_TTL_S)


class ChunkStore:
    """Lazily opened object store of one lattice."""

    def __init__(self, nc: NATS, prefix: str, *, ttl_s: float | None = None) -> None:
        self._nc = nc
        self._bucket = object_store_bucket(prefix)
        self.ttl_s = float(ttl_s if ttl_s is not None else chunk_ttl_s())
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> ObjectStore:
        async with self._lock:
            if self._store is None:
                js = self._nc.jetstream()
                wanted = wanted_replicas(self._nc)
                try:
                    self._store = await js.object_store(self._bucket)
                except nats.js.errors.BucketNotFoundError:
                    self._store = await create_replicated(lambda r: js.create_object_store(
                        self._bucket, config=js_api.ObjectStoreConfig(ttl=self.ttl_s, replicas=r)), wanted)
                else:
                    await self._give_ttl(js)
                    await raise_replicas(js, OBJ_STREAM_TEMPLATE.format(bucket=self._bucket), wanted)
            return self._store

    async def _give_ttl(self, js: nats.js.JetStreamContext) -> None:
        """A bucket made without a TTL (by an older host, or another tool) gets ours; one with a TTL keeps it."""
        stream = OBJ_STREAM_TEMPLATE.format(bucket=self._bucket)
        config = (await js.stream_info(stream)).config
        if config.max_age:
            if abs(config.max_age - self.ttl_s) > 1:
                log.info("object store %s keeps its TTL of %g s (this process is set to %g s)", self._bucket,
                         config.max_age, self.ttl_s)
            return
        config.max_age = self.ttl_s
        await js.update_stream(config)
        log.info("object store %s had no TTL; chunks now expire after %g s", self._bucket, self.ttl_s)

    async def put(self, key: str, data: bytes) -> None:
        store = await self._open()
        await store.put(key, data)

    async def get(self, key: str, expected_length: int) -> bytes:
        """Fetch without deleting; the stored size is checked before a byte of the object is read."""
        store = await self._open()
        try:
            info = await store.get_info(key)
            if info.size != expected_length:
                raise MissingChunk(f"chunked payload {key!r} has {info.size} bytes, expected {expected_length}")
            result = await store.get(key)
        except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
            raise MissingChunk(f"chunked payload {key!r} is missing from object store") from None
        data = result.data or b""
        if len(data) != expected_length:
            raise MissingChunk(f"chunked payload {key!r} has {len(data)} bytes, expected {expected_length}")
        return data

    async def delete(self, key: str) -> None:
        store = await self._open()
        try:
            await store.delete(key)
        except nats.js.errors.Error:
            pass  # deleting is housekeeping (the TTL is the backstop); the payload is already ours

    async def take(self, key: str, expected_length: int) -> bytes:
        """Fetch and delete: for an answer to our own request, which nobody else has reason to name."""
        data = await self.get(key, expected_length)
        await self.delete(key)
        return data
