"""The one ordering guarantee callers of `flush()` rely on, which nats-py does not give.

nats-py writes `flush()`'s PING straight to the socket, while the SUB, UNSUB and PUB commands made just
before it are still queued for the client's flusher task. When the server reads that PING on its own it
answers PONG before those commands reach it, so `flush()` can return while a subscription just made is
not yet live (a request sent at once finds no responder) or one just dropped still is. By the time the
first PONG comes back the flusher has written the queue, so a second PING follows every command made
before the call: its PONG means the server has them all.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS


async def server_caught_up(nc: NATS, timeout: float = 5.0) -> None:
    """Return once the server has processed every command `nc` sent before this call."""
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)
