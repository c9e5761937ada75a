"""Per-client admission for one listener: what one client address may hold, and who gets the actor next.

The listener's global limits (`max_concurrent`, `max_bodies_bytes`) stop the service from being overrun,
but one client could still fill them, or keep every actor instance busy with cheap-to-send, expensive or
endless requests, and everyone else would wait or get 503. So each client address has its own share:

- requests in flight (reading, waiting or at the actor): `max_client_concurrent`; beyond it, 429 at once;
- body bytes reserved (Content-Length, or the body limit when none is sent): `max_client_bodies_bytes`; 429;
- calls at the actor: a client that has spent more time at the actor lately (seconds, half-life 2 s) than
  another client there now may have at most `max_client_active` (1) calls at it; more wait for its own earlier
  ones, and waiting clients get turns lightest first. A client alone, or the lightest, is never held back;
  one that keeps slow or back-to-back requests going cannot take every actor instance while others want
  one (with two or more instances one is left), and its flood queues behind its own requests.

A client is its TCP peer address: forwarded-for headers are anyone's to write, so they are not believed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

#: How fast a client's past time at the actor stops counting against it.
USAGE_HALF_LIFE_S = 2.0
#: Clients whose usage is remembered (the lightest idle ones are forgotten first).
USAGE_CLIENTS = 4096


class Refused(Exception):
    """A client is over one of its own limits; `detail` names which and the setting that sets it."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


@dataclass
class ClientLimits:
    max_client_concurrent: int
    max_client_bodies_bytes: int
    max_client_active: int


@dataclass
class Admission:
    limits: ClientLimits
    in_flight: Counter[str] = field(default_factory=Counter)
    body_bytes: Counter[str] = field(default_factory=Counter)
    #: calls at the actor, per client and in all
    active: Counter[str] = field(default_factory=Counter)
    active_total: int = 0
    _waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = field(default_factory=dict)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    #: client -> (seconds its calls spent at the actor, decayed with USAGE_HALF_LIFE_S; when last updated)
    _usage: dict[str, tuple[float, float]] = field(default_factory=dict)
    _started: dict[str, list[float]] = field(default_factory=dict)

    @contextlib.contextmanager
    def request(self, client: str) -> Iterator[None]:
        """Count one request of `client` from its arrival to its answer; Refused when it has too many."""
        if self.in_flight[client] >= self.limits.max_client_concurrent:
            raise Refused("too many requests from this client",
                          f"{client} already has {self.in_flight[client]} requests in flight (max_client_concurrent "
                          f"{self.limits.max_client_concurrent}, WAFT_HTTP_MAX_CLIENT_CONCURRENT); retry shortly")
        self.in_flight[client] += 1
        try:
            yield
        finally:
            self._drop(self.in_flight, client, 1)

    @contextlib.contextmanager
    def body(self, client: str, reserved: int) -> Iterator[None]:
        """Reserve `reserved` body bytes for `client` while its body is read and served."""
        held = self.body_bytes[client]
        if reserved and held + reserved > self.limits.max_client_bodies_bytes:
            raise Refused("too many bytes in flight from this client",
                          f"{client} already holds {held} bytes of request bodies and asks for {reserved} more "
                          f"(max_client_bodies_bytes {self.limits.max_client_bodies_bytes}, "
                          "WAFT_HTTP_MAX_CLIENT_BODIES_BYTES); retry shortly")
        self.body_bytes[client] += reserved
        try:
            yield
        finally:
            self._drop(self.body_bytes, client, reserved)

    @contextlib.asynccontextmanager
    async def at_actor(self, client: str) -> AsyncIterator[None]:
        """Hold one call at the actor; while other clients use it, wait (cancellably) until this client has
        fewer than `max_client_active` there."""
        if not self._must_wait(client):
            self._take(client)
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(client, deque()).append((next(self._order), turn))
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled():  # the turn was given just as we were cancelled
                    self._give_back(client)
                else:
                    self._forget(client, turn)
                raise
        try:
            yield
        finally:
            self._give_back(client)

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def usage(self, client: str, now: float | None = None) -> float:
        """Recent seconds `client`'s calls spent at the actor (calls under way count up to now)."""
        now = time.monotonic() if now is None else now
        spent, at = self._usage.get(client, (0.0, now))
        return spent * math.exp2(-(now - at) / USAGE_HALF_LIFE_S) + sum(
            now - started for started in self._started.get(client, ()))

    def _must_wait(self, client: str) -> bool:
        """Over its share while a lighter client (less recent time at the actor) is there too."""
        if self.active[client] < self.limits.max_client_active:
            return False
        now = time.monotonic()
        mine = self.usage(client, now)
        return any(self.usage(c, now) < mine for c in {*self.active, *self._waiting} if c != client)

    def _take(self, client: str) -> None:
        self.active[client] += 1
        self.active_total += 1
        self._started.setdefault(client, []).append(time.monotonic())

    def _give_back(self, client: str) -> None:
        now = time.monotonic()
        started = self._started[client]
        took = now - started.pop(0)
        if not started:
            del self._started[client]
        spent, at = self._usage.get(client, (0.0, now))
        self._usage[client] = (spent * math.exp2(-(now - at) / USAGE_HALF_LIFE_S) + took, now)
        if len(self._usage) > USAGE_CLIENTS:  # forget the lightest quarter at once, never a client with calls
            idle = [c for c in self._usage if c not in self.active and c not in self._waiting and c != client]
            for c in sorted(idle, key=lambda c: self.usage(c, now))[:len(self._usage) - USAGE_CLIENTS * 3 // 4]:
                del self._usage[c]
        self._drop(self.active, client, 1)
        self.active_total -= 1
        self._wake()

    def _wake(self) -> None:
        """Give turns to waiting clients that may go now: fewest calls at the actor first, then the longest waiting."""
        while self._waiting:
            ready = [c for c in self._waiting if not self._must_wait(c)]
            if not ready:
                return
            now = time.monotonic()
            chosen = min(ready, key=lambda c: (self.usage(c, now), self._waiting[c][0][0]))
            queue = self._waiting[chosen]
            _, turn = queue.popleft()
            if not queue:
                del self._waiting[chosen]
            if not turn.done():  # not cancelled while queued
                self._take(chosen)
                turn.set_result(None)

    def _forget(self, client: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(client)
        if queue is not None:
            for entry in list(queue):
                if entry[1] is turn:
                    queue.remove(entry)
            if not queue:
                del self._waiting[client]
        self._wake()  # the others may no longer share with this client

    @staticmethod
    def _drop(counter: Counter[str], client: str, amount: int) -> None:
        counter[client] -= amount
        if counter[client] <= 0:
            del counter[client]  # bounded by clients in flight, not by every address ever seen
