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
  one (with two or more instances one is left), and its flood queues behind its own requests;
- actor time: each client has a bucket of actor-seconds (`max_client_actor_burst_ms`) refilled at
  `max_client_actor_ms_per_s`, and every call's time at the actor is taken from it, refused and failed calls
  included (cheap refusals sent back to back cost as much as the ordinary load did). A client in debt waits
  (at most `max_client_wait_ms`, else 429 with the Retry-After its debt needs) while a client within its share
  wants the actor. The rule above gives a flood an equal share of actor time, which on a small machine is
  enough to double everyone else's latency; this caps it at the documented rate instead. It is work-conserving:
  a client alone, or clients all over their share, are not held to it (a benchmark from one address may use
  the whole machine), and debt run up while no one else was there is forgiven.

A client is its TCP peer address: forwarded-for headers are anyone's to write, so they are not believed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from waft_httpserver.settings import (
    DEFAULT_MAX_CLIENT_ACTOR_BURST_MS,
    DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S,
    DEFAULT_MAX_CLIENT_WAIT_MS,
)

#: How fast a client's past time at the actor stops counting against it.
USAGE_HALF_LIFE_S = 2.0
#: Clients whose usage is remembered (the lightest idle ones are forgotten first).
USAGE_CLIENTS = 4096
#: A client whose last call ended this recently still wants the actor: ordinary clients have gaps between
#: calls, and an attacker must not count as alone in them.
PRESENT_S = 1.0
#: How often waits for the actor-time share are looked at again (refills and clients leaving come with time).
SHARE_TICK_S = 0.05


class Refused(Exception):
    """A client is over one of its own limits; `detail` names which and the setting that sets it."""

    def __init__(self, error: str, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.retry_after = retry_after


@dataclass
class ClientLimits:
    max_client_concurrent: int
    max_client_bodies_bytes: int
    max_client_active: int
    #: actor-seconds per second a client may use while a client within its share wants the actor
    client_actor_rate: float = DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S / 1000
    client_actor_burst_s: float = DEFAULT_MAX_CLIENT_ACTOR_BURST_MS / 1000
    #: how long a client over its share may wait for it before 429
    max_client_wait_s: float = DEFAULT_MAX_CLIENT_WAIT_MS / 1000


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
    #: client -> (actor-seconds left in its bucket, negative in debt; when last charged)
    _bucket: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: clients whose last call ended within PRESENT_S (oldest first), with when
    _recent: dict[str, float] = field(default_factory=dict)
    _tick: asyncio.TimerHandle | None = None
    clock: Callable[[], float] = time.monotonic

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
        fewer than `max_client_active` there and, while a client within its share is there, is out of debt;
        Refused when that debt would take longer than `max_client_wait_s` to pay."""
        now = self.clock()
        bound: float | None = None
        if self.over_share(client, now):
            need = self._refill_s(client, now)
            if need > self.limits.max_client_wait_s:
                raise self._over_share_refusal(client, need)
            bound = self.limits.max_client_wait_s
        if not self._must_wait(client):
            self._take(client)
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(client, deque()).append((next(self._order), turn))
            self._start_tick()
            try:
                async with asyncio.timeout(bound):
                    await turn
            except BaseException as exc:
                if turn.done() and not turn.cancelled():  # the turn was given just as we were cancelled
                    self._give_back(client)
                else:
                    self._forget(client, turn)
                if isinstance(exc, TimeoutError) and bound is not None:
                    raise self._over_share_refusal(client, self._refill_s(client, self.clock())) from None
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
        now = self.clock() if now is None else now
        return self._decayed(client, now) + sum(now - started for started in self._started.get(client, ()))

    def tokens(self, client: str, now: float | None = None) -> float:
        """Actor-seconds left in `client`'s bucket, negative when in debt (calls under way count up to now)."""
        now = self.clock() if now is None else now
        return self._refilled(client, now) - sum(now - started for started in self._started.get(client, ()))

    def _decayed(self, client: str, now: float) -> float:
        """`client`'s finished calls' time at the actor, decayed to `now`."""
        spent, at = self._usage.get(client, (0.0, now))
        return spent * math.exp2(-(now - at) / USAGE_HALF_LIFE_S)

    def _refilled(self, client: str, now: float) -> float:
        """`client`'s bucket as of `now`, before the calls under way are taken from it."""
        left, at = self._bucket.get(client, (self.limits.client_actor_burst_s, now))
        return min(self.limits.client_actor_burst_s, left + self.limits.client_actor_rate * (now - at))

    def over_share(self, client: str, now: float | None = None) -> bool:
        """In debt while another client, within its own share, wants the actor (is at it, waits, or just was)."""
        now = self.clock() if now is None else now
        return self.tokens(client, now) < 0 and self._light_other(client, now)

    def _light_other(self, client: str, now: float) -> bool:
        while self._recent:
            oldest, ended = next(iter(self._recent.items()))
            if now - ended < PRESENT_S:
                break
            del self._recent[oldest]
        return any(self.tokens(c, now) >= 0 for c in {*self.active, *self._waiting, *self._recent} if c != client)

    def _refill_s(self, client: str, now: float) -> float:
        return max(0.0, -self.tokens(client, now)) / self.limits.client_actor_rate

    def _over_share_refusal(self, client: str, need: float) -> Refused:
        limits = self.limits
        return Refused("too much actor time for this client",
                       f"{client} used its share of the actor while other clients want it "
                       f"(max_client_actor_ms_per_s {limits.client_actor_rate * 1000:g}, "
                       "WAFT_HTTP_MAX_CLIENT_ACTOR_MS_PER_S; burst max_client_actor_burst_ms "
                       f"{limits.client_actor_burst_s * 1000:g}); "
                       f"retry in {need:.1f} s", retry_after=max(1, math.ceil(need)))

    def _start_tick(self) -> None:
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(SHARE_TICK_S, self._on_tick)

    def _on_tick(self) -> None:
        """Waits for the share end with time, not with a call ending: look again while any is waiting."""
        self._tick = None
        self._wake()
        if self._waiting:
            self._start_tick()

    def _must_wait(self, client: str) -> bool:
        """In debt while a client within its share is there, or over `max_client_active` while a lighter client
        (less recent time at the actor) is there too."""
        now = self.clock()
        if self.over_share(client, now):
            return True
        if self.active[client] < self.limits.max_client_active:
            return False
        mine = self.usage(client, now)
        return any(self.usage(c, now) < mine for c in {*self.active, *self._waiting} if c != client)

    def _take(self, client: str) -> None:
        self.active[client] += 1
        self.active_total += 1
        self._started.setdefault(client, []).append(self.clock())

    def _give_back(self, client: str) -> None:
        now = self.clock()
        started = self._started[client]
        took = now - started.pop(0)
        if not started:
            del self._started[client]
        self._usage[client] = (self._decayed(client, now) + took, now)
        left = self._refilled(client, now) - took
        if left < 0 and not self._light_other(client, now):
            left = 0.0  # used while no one else wanted the actor: nobody's loss
        self._bucket[client] = (left, now)
        self._recent.pop(client, None)
        self._recent[client] = now  # kept oldest first
        if len(self._usage) > USAGE_CLIENTS:  # forget the lightest quarter at once, never a client with calls
            idle = [c for c in self._usage if c not in self.active and c not in self._waiting and c != client]
            for c in sorted(idle, key=lambda c: self.usage(c, now))[:len(self._usage) - USAGE_CLIENTS * 3 // 4]:
                del self._usage[c]
                self._bucket.pop(c, None)
        self._drop(self.active, client, 1)
        self.active_total -= 1
        self._wake()

    def _wake(self) -> None:
        """Give turns to waiting clients that may go now: fewest calls at the actor first, then the longest waiting."""
        while self._waiting:
            ready = [c for c in self._waiting if not self._must_wait(c)]
            if not ready:
                return
            now = self.clock()
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
