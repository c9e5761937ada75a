"""The long-lived lattice connection (a host's, a provider's) and two guarantees nats-py does not give.

Ordering. nats-py writes `flush()`'s PING straight to the socket, while the SUB, UNSUB and PUB commands
made just before it are still queued for the client's flusher task. When the server reads that PING on
its own it answers PONG before those commands reach it, so `flush()` can return while a subscription just
made is not yet live (a request sent at once finds no responder) or one just dropped still is. By the
time the first PONG comes back the flusher has written the queue, so a second PING follows every command
made before the call: its PONG means the server has them all (`server_caught_up`).

Requests in flight when the connection is lost. A request whose message was still in the socket, or
whose reply the server sent while we were away, is never answered, yet nats-py leaves it waiting out
its whole timeout (30 s for an HTTP request). Behind a frozen cluster member that held every request of
the httpserver for 30 s, so its per-client limit answered 429 to everything after it long after the
connection had moved to another member. On each disconnect `connect` fails every request then waiting
with `ConnectionLostInFlight`: the caller learns at once that the call may or may not have run, and a
request made after the disconnect (buffered until the reconnect) is not affected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from waft.lattice.credentials import FAILOVER_PINGS, connect_options, server_urls


class ConnectionLostInFlight(nats.errors.Error):
    """The connection was lost while this request waited: it may or may not have reached its target. Not a
    TimeoutError: nats-py's `request` turns every asyncio.TimeoutError from its wait into its own timeout."""

    def __str__(self) -> str:
        return "nats: the connection to the lattice was lost while waiting for the answer"


async def connect(url: str, seed: str | None, *, name: str, **options: Any) -> NATS:
    """A connection that fails over between the members in `url` and never gives up reconnecting."""
    nc = NATS()

    async def disconnected() -> None:
        if not nc.is_closed:  # a close on purpose ends the requests as nats-py always has
            fail_in_flight(nc)

    await nc.connect(server_urls(url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                     disconnected_cb=disconnected, **FAILOVER_PINGS, **connect_options(url, seed), **options)
    return nc


def fail_in_flight(nc: NATS) -> int:
    """Fail every request `nc` is waiting on (its shared reply subscription's futures); how many it failed.

    nats-py keeps them in `_resp_map` (token -> future; each removes itself when done); the pinned version
    is checked by tests/lattice/test_connection.py."""
    waiting: dict[str, asyncio.Future[Any]] = getattr(nc, "_resp_map", None) or {}
    failed = 0
    for future in list(waiting.values()):
        if not future.done():
            future.set_exception(ConnectionLostInFlight())
            failed += 1
    return failed


async def server_caught_up(nc: NATS, timeout: float = 5.0) -> None:
    """Return once the server has processed every command `nc` sent before this call."""
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)
