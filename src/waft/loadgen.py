"""Open-loop load: requests leave on a fixed schedule whatever the server does.

A closed loop (send, wait, send) slows down with the server and hides its queueing. Here request i
is due at `start + i / rate`; its latency is measured from when it was *due*, not from when it went
out, so a stalled server shows up as latency instead of as a lower offered rate (no coordinated
omission). Every request has a timeout; the run ends by itself after `duration` plus that timeout.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when there are no samples, so an empty run shows."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class LoadResult:
    rate: float
    duration: float
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503", "timeout", "error:..."
    sent: int = 0
    elapsed: float = 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("2"))

    @property
    def errors(self) -> int:
        return self.sent - self.ok

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def quantile(self, q: float) -> float:
        return percentile(self.latencies, q)

    def summary(self) -> dict[str, object]:
        errors = {k: v for k, v in sorted(self.statuses.items()) if not k.startswith("2")}
        return {"offered_rate": self.rate, "achieved_rate": round(self.achieved_rate, 2), "sent": self.sent,
                "ok": self.ok, "errors": errors,
                "p50_ms": round(self.quantile(50) * 1e3, 2), "p95_ms": round(self.quantile(95) * 1e3, 2),
                "p99_ms": round(self.quantile(99) * 1e3, 2),
                "max_ms": round(max(self.latencies, default=float("nan")) * 1e3, 2)}


def load_bodies(photos: Path | None) -> list[bytes]:
    if photos is None:
        return [b""]
    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if photos.is_dir() else [photos]
    if not files:
        raise ValueError(f"no .jpg/.jpeg/.png files in {photos}")
    return [f.read_bytes() for f in files]


async def open_loop(url: str, rate: float, duration: float, bodies: Sequence[bytes], *, method: str = "PUT",
                    timeout: float = 10.0, check: bool = True) -> LoadResult:
    """Offer `rate` requests/s to `url` for `duration` seconds, cycling through `bodies`."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    result = LoadResult(rate, duration)
    total = max(1, int(rate * duration))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(due: float, body: bytes) -> None:
            try:
                async with session.request(method, url, data=body) as response:
                    await response.read()
                    status = str(response.status)
            except TimeoutError:
                status = "timeout"
            except aiohttp.ClientError as exc:
                status = f"error:{type(exc).__name__}"
            result.statuses[status] += 1
            if status.startswith("2"):
                result.latencies.append(loop.time() - due)

        async with asyncio.TaskGroup() as tasks:
            for i, body in zip(range(total), itertools.cycle(bodies), strict=False):
                due = start + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                result.sent += 1
                tasks.create_task(one(due, body))
        result.elapsed = loop.time() - start
    return result


async def find_max_rate(url: str, bodies: Sequence[bytes], *, p99_bound: float, start: float = 2.0,
                        ceiling: float = 1000.0, duration: float = 4.0, steps: int = 4) -> tuple[float, LoadResult]:
    """The highest offered rate whose p99 stays under `p99_bound` with no errors.

    Doubles from `start` until a rate misses, then bisects between the last rate that held and the
    first that did not, `steps` times.
    """

    async def holds(rate: float) -> LoadResult | None:
        result = await open_loop(url, rate, duration, bodies)
        return result if result.errors == 0 and result.quantile(99) <= p99_bound else None

    first = await holds(start)
    if first is None:
        raise RuntimeError(f"even {start:g} req/s misses the p99 bound of {p99_bound * 1e3:g} ms")
    good, good_result, bad = start, first, None
    while bad is None and good < ceiling:
        rate = min(good * 2, ceiling)
        result = await holds(rate)
        if result is None:
            bad = rate
        else:
            good, good_result = rate, result
    for _ in range(steps if bad is not None else 0):
        rate = (good + bad) / 2
        result = await holds(rate)
        if result is None:
            bad = rate
        else:
            good, good_result = rate, result
    return good, good_result
