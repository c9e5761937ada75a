"""Micro-batching in the runner: order and ownership of results, requests larger than the batch limit,
the gathering delay and the slot timeout, failures reaching every member. No wall-clock assertions:
runs are held by a gate and observed through the engine's calls."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from mlinference_support import GatedEngine, started
from waft_mlinference.runner import ModelRunner
from waft_mlinference.settings import BatchSettings, ModelOptions

from waft.interfaces.mlinference import ONNX_ERROR, OVERLOADED, RUNTIME_ERROR, ModelError

pytestmark = pytest.mark.timeout(120)


def rows(start: int, count: int) -> np.ndarray:
    """`count` rows no other request has: [[start*10, start*10+1, ...], ...]."""
    return np.arange(start * 10, start * 10 + count * 4, dtype=np.float32).reshape(count, 4)


def batched(engine: GatedEngine, *, max_items: int, max_delay_ms: float = 1000, max_concurrent: int = 2,
            slot_timeout_s: float = 30.0) -> ModelRunner:
    return ModelRunner("m", engine, ModelOptions(max_concurrent=max_concurrent,
                                                 batch=BatchSettings(max_items, max_delay_ms)),
                       slot_timeout_s=slot_timeout_s)


async def test_results_keep_their_order_and_owner_across_batches():
    engine = GatedEngine()
    engine.gate.set()
    runner = batched(engine, max_items=4, max_delay_ms=5)
    sizes = [1, 2, 1, 3, 1, 2, 4, 1, 1]
    inputs = [rows(i, n) for i, n in enumerate(sizes)]
    try:
        outputs = await asyncio.gather(*(runner.predict(x) for x in inputs))
        for x, out in zip(inputs, outputs, strict=True):
            assert out[0].shape == x.shape
            np.testing.assert_array_equal(out[0], x * 2)  # its own rows, in its own order
        assert sum(shape[0] for shape in engine.calls) == sum(sizes)
        assert all(shape[0] <= 4 for shape in engine.calls)  # none of these is over the limit
        assert runner.batches_run == len(engine.calls) < len(sizes)
    finally:
        await runner.close()


async def test_a_request_larger_than_the_limit_runs_alone_and_flushes_the_open_batch():
    engine = GatedEngine()
    engine.gate.set()
    runner = batched(engine, max_items=4)  # a 1 s delay: only a full batch goes early
    try:
        small = asyncio.create_task(runner.predict(rows(1, 1)))
        await asyncio.sleep(0)
        big = await runner.predict(rows(2, 6))  # 1 + 6 > 4: the small batch is sent, the big one is full
        np.testing.assert_array_equal(big[0], rows(2, 6) * 2)
        np.testing.assert_array_equal((await small)[0], rows(1, 1) * 2)
        assert sorted(engine.calls) == [(1, 4), (6, 4)]
    finally:
        await runner.close()


async def test_a_partial_batch_goes_when_the_delay_runs_out():
    engine = GatedEngine()
    engine.gate.set()
    runner = batched(engine, max_items=8, max_delay_ms=1)
    try:
        out = await runner.predict(rows(3, 2))  # nobody else comes: sent on max_delay_ms, not on max_items
        np.testing.assert_array_equal(out[0], rows(3, 2) * 2)
        assert engine.calls == [(2, 4)] and runner.batches_run == 1
    finally:
        await runner.close()


async def test_a_batch_that_gets_no_slot_in_time_is_overloaded_for_every_member():
    engine = GatedEngine()
    runner = batched(engine, max_items=2, max_concurrent=1, slot_timeout_s=0.05)
    try:
        first = asyncio.create_task(runner.predict(rows(1, 2)))  # full at once, takes the only slot
        await started(engine)
        waiting = await asyncio.gather(runner.predict(rows(2, 1)), runner.predict(rows(3, 1)),
                                       return_exceptions=True)
        for error in waiting:
            assert isinstance(error, ModelError) and error.variant == OVERLOADED
            assert "no free slot within 0.05 s" in error.message
        engine.gate.set()
        np.testing.assert_array_equal((await first)[0], rows(1, 2) * 2)
        assert engine.calls == [(2, 4)]
    finally:
        engine.gate.set()
        await runner.close()


async def test_an_engine_failure_reaches_every_member_of_the_batch():
    engine = GatedEngine()
    engine.gate.set()
    engine.fail = RuntimeError("kernel exploded")
    runner = batched(engine, max_items=3)
    try:
        results = await asyncio.gather(*(runner.predict(rows(i, 1)) for i in range(3)), return_exceptions=True)
        assert engine.calls == [(3, 4)]
        for error in results:
            assert isinstance(error, ModelError) and error.variant == ONNX_ERROR
            assert "kernel exploded" in error.message
    finally:
        await runner.close()


async def test_an_output_without_the_batch_dimension_is_a_runtime_error():
    class Summing(GatedEngine):
        def run(self, array: np.ndarray) -> list[np.ndarray]:
            self.calls.append(array.shape)
            return [array.sum(axis=0)]

    engine = Summing()
    runner = batched(engine, max_items=2)
    try:
        results = await asyncio.gather(runner.predict(rows(1, 1)), runner.predict(rows(2, 1)),
                                       return_exceptions=True)
        for error in results:
            assert isinstance(error, ModelError) and error.variant == RUNTIME_ERROR
            assert "does not keep the batch dimension" in error.message
    finally:
        await runner.close()
