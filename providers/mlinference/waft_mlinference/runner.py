"""Serving one loaded model: a thread pool, a concurrency limit, a bounded queue, optional micro-batching.

Why each part:
- Engines block (and release the GIL), so inference runs in a per-model thread pool; concurrent
  requests overlap and the event loop keeps answering NATS.
- `max_concurrent` bounds how many runs a model has in flight; beyond that requests wait, but only
  `max_queue` of them: the next one is refused at once with `overloaded` (HTTP 429) instead of
  piling up memory and latency. A request that waits longer than the caller's RPC timeout for a slot
  is also answered `overloaded`: nobody is listening for it any more.
- Micro-batching (per model, off by default) gathers concurrent requests for up to `max_items` rows
  or `max_delay_ms` and runs them as one batch along the first dimension, which must be dynamic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from waft.interfaces.mlinference import CORRUPT_INPUT_TENSOR, OVERLOADED, RUNTIME_ERROR, ModelError
from waft_mlinference.engines import Engine, check_input
from waft_mlinference.settings import ModelOptions

log = logging.getLogger("waft.mlinference.runner")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass
class ModelStats:
    """What Triton's statistics extension reports per model (counts and cumulative nanoseconds): `queue` is the
    wait for a slot (and a batch), `compute_input` the decode and checks before the run, `compute_infer` the
    engine, `compute_output` the answer's encoding; `success`/`fail` the whole request. Every count is of
    requests (`inference_count` too: the config declares no batch dimension), `batches` is keyed by the
    requests one engine run served."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    #: batch size -> (executions, compute_infer ns)
    batches: dict[int, Duration] = field(default_factory=dict)

    def to_triton(self) -> dict[str, Any]:
        def d(x: Duration) -> dict[str, int]:
            return {"count": x.count, "ns": x.ns}

        return {"last_inference": self.last_inference_ms, "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {k: d(getattr(self, k)) for k in ("success", "fail", "queue", "compute_input",
                                                                      "compute_infer", "compute_output")},
                "batch_stats": [{"batch_size": size, "compute_infer": d(x)}
                                for size, x in sorted(self.batches.items())]}


@dataclass
class _Batch:
    key: tuple[Any, ...]
    items: list[tuple[np.ndarray, asyncio.Future[list[np.ndarray]]]] = field(default_factory=list)
    rows: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)


class ModelRunner:
    def __init__(self, name: str, engine: Engine, options: ModelOptions, *, slot_timeout_s: float = 30.0) -> None:
        self.name = name
        self.engine = engine
        self.options = options
        self.slot_timeout_s = slot_timeout_s
        self.batching = options.batch
        self.batching_note: str | None = None
        if self.batching is not None and not _batchable(engine):
            self.batching_note = "batching requested but the model's first input dimension is not dynamic; off"
            log.warning("%s: %s", name, self.batching_note)
            self.batching = None
        self._executor = ThreadPoolExecutor(max_workers=options.max_concurrent, thread_name_prefix=f"ml-{name}")
        self._slots = asyncio.Semaphore(options.max_concurrent)
        self._pending = 0
        self._running = 0
        self._open: _Batch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_run = 0
        self.statistics = ModelStats()

    @property
    def stats(self) -> dict[str, int]:
        return {"running": self._running, "pending": self._pending, "batches": self.batches_run}

    async def predict(self, array: np.ndarray) -> list[np.ndarray]:
        """Outputs of the model for `array` (already checked against nothing; checked here)."""
        if len(self.engine.inputs) != 1:
            raise ModelError(RUNTIME_ERROR, f"model {self.name!r} has {len(self.engine.inputs)} inputs "
                                            f"({', '.join(i.name for i in self.engine.inputs)}); send each by name")
        check_input(self.name, self.engine.inputs[0], array)
        self._admit()
        self._pending += 1
        try:
            if self.batching is not None:
                return await self._batched(array)
            return await self._run(array)
        finally:
            self._pending -= 1

    async def predict_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs of the model for one array per input, by name: every input must be given, and nothing else.
        Not micro-batched (rows of several inputs would have to be gathered together)."""
        declared = {spec.name: spec for spec in self.engine.inputs}
        unknown = sorted(set(feeds) - set(declared))
        missing = [name for name in declared if name not in feeds]
        if unknown or missing:
            raise ModelError(CORRUPT_INPUT_TENSOR, f"model {self.name!r} takes inputs {', '.join(declared)}"
                                                   + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                                                   + (f"; missing: {', '.join(missing)}" if missing else ""))
        for name, array in feeds.items():
            check_input(self.name, declared[name], array)
        run_named = getattr(self.engine, "run_named", None)
        if run_named is None:
            if len(feeds) != 1:
                raise ModelError(RUNTIME_ERROR, f"model {self.name!r}: its engine ({self.engine.encoding}) feeds "
                                                "one input only")
            return await self.predict(next(iter(feeds.values())))
        self._admit()
        self._pending += 1
        try:
            first = next(iter(feeds.values()))
            return await self._run(first, lambda: run_named(feeds))
        finally:
            self._pending -= 1

    def _admit(self) -> None:
        limit = self.options.max_concurrent + self.options.max_queue
        if self._pending >= limit:
            raise ModelError(OVERLOADED, f"model {self.name!r} is overloaded: {self._pending} requests in flight "
                                         f"(limits: max_concurrent {self.options.max_concurrent}, max_queue "
                                         f"{self.options.max_queue}); retry later")

    async def _acquire(self) -> None:
        try:
            async with asyncio.timeout(self.slot_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise ModelError(OVERLOADED, f"model {self.name!r} is overloaded: no free slot within "
                                         f"{self.slot_timeout_s:g} s (max_concurrent {self.options.max_concurrent})"
                                         ) from None

    async def _run(self, array: np.ndarray, call: Callable[[], list[np.ndarray]] | None = None,
                   requests: int = 1) -> list[np.ndarray]:
        """Run `call` (default: the engine on `array`) in a slot, for `requests` requests (a micro-batch's).

        Counted as Triton counts a model without a batch dimension it manages (its config says max_batch_size
        0): per request, each request of a shared run charged the whole run, so queue, compute_input,
        compute_infer and compute_output all count requests (perf_analyzer refuses counts that differ)."""
        waited = time.perf_counter_ns()
        await self._acquire()
        started = time.perf_counter_ns()
        self._running += 1
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._call, call or (lambda: self.engine.run(array)))
        finally:
            self._running -= 1
            self._slots.release()
        ran = time.perf_counter_ns() - started
        self.statistics.queue.add((started - waited) * requests, requests)  # counted with the run it led to
        self.statistics.compute_infer.add(ran * requests, requests)
        self.statistics.execution_count += 1
        self.statistics.batches.setdefault(requests, Duration()).add(ran)
        return outputs

    def _call(self, call: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        try:
            return call()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(self.engine.error_variant, f"model {self.name!r}: {type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------------------------- batching
    async def _batched(self, array: np.ndarray) -> list[np.ndarray]:
        assert self.batching is not None
        key = (array.shape[1:], array.dtype)
        batch = self._open
        if batch is None or batch.key != key or batch.rows + array.shape[0] > self.batching.max_items:
            if batch is not None:
                batch.full.set()  # send the open batch on its way now rather than mix shapes
            batch = self._open = _Batch(key)
            task = asyncio.create_task(self._collect(batch), name=f"batch {self.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()
        batch.items.append((array, future))
        batch.rows += array.shape[0]
        if batch.rows >= self.batching.max_items:
            batch.full.set()
            self._open = None
        return await future

    async def _collect(self, batch: _Batch) -> None:
        assert self.batching is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.batching.max_delay_ms / 1000):
                await batch.full.wait()
        if self._open is batch:
            self._open = None
        live = [(a, f) for a, f in batch.items if not f.done()]
        if not live:
            return
        try:
            stacked = live[0][0] if len(live) == 1 else np.concatenate([a for a, _ in live], axis=0)
            outputs = await self._run(stacked, requests=len(live))
            self.batches_run += 1
            start = 0
            for array, future in live:
                end = start + array.shape[0]
                parts = []
                for output in outputs:
                    if output.ndim == 0 or output.shape[0] != stacked.shape[0]:
                        raise ModelError(RUNTIME_ERROR, f"model {self.name!r}: output shape {list(output.shape)} "
                                                        f"does not keep the batch dimension; disable batching")
                    parts.append(output[start:end])
                if not future.done():
                    future.set_result(parts)
                start = end
        except (Exception, asyncio.CancelledError) as exc:
            error = exc if isinstance(exc, ModelError) else ModelError(RUNTIME_ERROR, f"batch failed: {exc!r}")
            for _, future in live:
                if not future.done():
                    future.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def close(self) -> None:
        """Stop batch collectors, fail nothing silently, let running threads finish in the background."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self.engine.close()


def _batchable(engine: Engine) -> bool:
    if len(engine.inputs) != 1:
        return False
    shape = engine.inputs[0].shape
    return shape is None or (len(shape) >= 1 and shape[0] is None)
