"""How many copies of the lattice's JetStream state (lattice cache, apps store, chunk store) a cluster keeps.

One nats-server is one copy and a single point of failure; on a cluster every stream the lattice needs
gets `min(3, cluster size)` replicas, so losing one member loses neither links, claims, deployed apps
nor a chunked payload in flight. The size is what the server we are connected to says in its INFO:
the members' client URLs it gossips (`connect_urls`), which nats-server fills from its routes.

A stream already there is brought up to the wanted count but never down: a member that is stopped for a
while makes the server report a smaller cluster, and shedding replicas then would leave the lattice with
fewer copies exactly when one is missing. Lowering the count is an operator's decision
(`nats stream edit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_REPLICAS = 3
#: JetStream's error codes for "not enough servers for that many replicas" / "no replicas when not clustered".
INSUFFICIENT_RESOURCES = 10023
REPLICAS_NOT_SUPPORTED = 10074


def cluster_size(nc: NATS) -> int:
    """Members of the cluster the connected server belongs to (1 when it is not clustered)."""
    info: dict[str, Any] = getattr(nc, "_server_info", None) or {}
    if not info.get("cluster"):
        return 1
    urls = {str(u) for u in info.get("connect_urls") or []}
    return max(1, len(urls))


def wanted_replicas(nc: NATS) -> int:
    return min(MAX_REPLICAS, cluster_size(nc))


def too_many_replicas(exc: nats.js.errors.Error) -> bool:
    """The server refused the replica count (fewer members up than asked for): retry with fewer."""
    return getattr(exc, "err_code", None) in (INSUFFICIENT_RESOURCES, REPLICAS_NOT_SUPPORTED)


async def raise_replicas(js: Any, stream: str, wanted: int) -> None:
    """Bring `stream` up to `wanted` replicas if it has fewer (see the module doc: never down)."""
    info = await js.stream_info(stream)
    config = info.config
    current = config.num_replicas or 1
    if current >= wanted:
        return
    config.num_replicas = wanted
    try:
        await js.update_stream(config)
    except nats.js.errors.Error as exc:
        log.warning("stream %s keeps %d replica(s); raising it to %d failed: %s", stream, current, wanted, exc)
        return
    log.warning("stream %s had %d replica(s); now %d", stream, current, wanted)


async def create_replicated(create: Callable[[int], Awaitable[T]], wanted: int) -> T:
    """`create(replicas)` with `wanted`, then fewer while the server says it lacks the members for them (a
    member down at that moment); the count is raised again by the next host that finds the stream."""
    for replicas in range(wanted, 0, -1):
        try:
            return await create(replicas)
        except nats.js.errors.Error as exc:
            if replicas == 1 or not too_many_replicas(exc):
                raise
            log.warning("only %d replica(s) fit now (%s); trying fewer", replicas, exc)
    raise AssertionError("unreachable")


async def open_replicated_kv(nc: NATS, bucket: str, *, history: int = 1, ttl: float | None = None) -> KeyValue:
    """The KV bucket `bucket`, created with the wanted replicas or raised to them (the lattice's app store;
    with `ttl`, entries expire: the reconciler's leases)."""
    js = nc.jetstream()
    wanted = wanted_replicas(nc)
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await create_replicated(lambda r: js.create_key_value(bucket=bucket, history=history, ttl=ttl,
                                                                     replicas=r), wanted)
    await raise_replicas(js, f"KV_{bucket}", wanted)
    return kv


async def wait_jetstream(nc: NATS, timeout_s: float, *, interval_s: float = 0.25) -> None:
    """Until JetStream answers on this connection. A cluster member's JetStream serves only once a majority
    of the members has elected a meta leader, so the first member of a cluster started alone waits here for
    the second; a TimeoutError past `timeout_s` says so."""
    js = nc.jetstream()
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                await js.account_info()
                return
            except (TimeoutError, nats.errors.Error) as exc:
                log.info("JetStream not ready yet (%s); waiting for the cluster to elect a leader",
                         type(exc).__name__)
            await asyncio.sleep(interval_s)
