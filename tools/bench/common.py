"""Measuring fairly on a shared, noisy machine: interleave ours and the baseline, report ratios."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from waft.loadgen import percentile

__all__ = ["Pair", "latency_pair", "percentile", "row", "throughput"]

Call = Callable[[], Awaitable[object]]


@dataclass
class Pair:
    ours: list[float]
    baseline: list[float]


async def latency_pair(ours: Call, baseline: Call, *, rounds: int = 10, per_round: int = 50,
                       warmup: int = 20) -> Pair:
    """Sequential latencies, alternating blocks of ours and baseline so drift hits both alike."""
    for _ in range(warmup):
        await ours()
        await baseline()
    pair = Pair([], [])
    for _ in range(rounds):
        for call, sink in ((ours, pair.ours), (baseline, pair.baseline)):
            for _ in range(per_round):
                start = time.perf_counter()
                await call()
                sink.append(time.perf_counter() - start)
    return pair


async def throughput(call: Call, *, concurrency: int, duration: float) -> float:
    """Completed calls per second with `concurrency` callers in a closed loop."""
    done = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return done / (time.perf_counter() - start)


async def throughput_pair(ours: Call, baseline: Call, *, concurrency: int, duration: float = 2.0,
                          rounds: int = 3) -> tuple[float, float]:
    """Median throughput of each over interleaved rounds."""
    ours_rates, base_rates = [], []
    for _ in range(rounds):
        ours_rates.append(await throughput(ours, concurrency=concurrency, duration=duration))
        base_rates.append(await throughput(baseline, concurrency=concurrency, duration=duration))
    return statistics.median(ours_rates), statistics.median(base_rates)


def row(name: str, ours: float, baseline: float, unit: str, *, lower_is_better: bool = True,
        goal: str = "") -> dict[str, object]:
    """One figure: ratio is ours / baseline (so <1 beats the baseline for times, >1 for rates)."""
    return {"name": name, "ours": ours, "baseline": baseline, "ratio": ours / baseline if baseline else float("nan"),
            "unit": unit, "lower_is_better": lower_is_better, "goal": goal}
