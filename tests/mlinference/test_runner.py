"""The per-model runner: limits and queue (overloaded), engine errors, micro-batching equal to unbatched."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from mlinference_support import GatedEngine, ensure_models, started
from waft_mlinference.engines import load_engine
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.runner import ModelRunner
from waft_mlinference.settings import BatchSettings, ModelOptions

from waft.interfaces.mlinference import CORRUPT_INPUT_TENSOR, ONNX_ERROR, OVERLOADED, ModelError

pytestmark = pytest.mark.timeout(120)


async def test_limit_then_queue_then_overloaded():
    engine = GatedEngine()
    runner = ModelRunner("m", engine, ModelOptions(max_concurrent=1, max_queue=1))
    try:
        x = np.ones((1, 4), np.float32)
        first = asyncio.create_task(runner.predict(x))
        await started(engine)
        queued = asyncio.create_task(runner.predict(x + 1))
        await asyncio.sleep(0)
        with pytest.raises(ModelError) as info:
            await runner.predict(x)
        assert info.value.variant == OVERLOADED
        assert "max_concurrent 1" in info.value.message and "max_queue 1" in info.value.message
        engine.gate.set()
        assert (await first)[0].tolist() == [[2, 2, 2, 2]]
        assert (await queued)[0].tolist() == [[4, 4, 4, 4]]
    finally:
        engine.gate.set()
        await runner.close()


async def test_waiting_longer_than_the_slot_timeout_is_overloaded():
    engine = GatedEngine()
    runner = ModelRunner("m", engine, ModelOptions(max_concurrent=1, max_queue=5), slot_timeout_s=0.05)
    try:
        first = asyncio.create_task(runner.predict(np.ones((1, 4), np.float32)))
        await started(engine)
        with pytest.raises(ModelError, match=r"no free slot within 0\.05 s"):
            await runner.predict(np.ones((1, 4), np.float32))
        engine.gate.set()
        await first
    finally:
        engine.gate.set()
        await runner.close()


async def test_engine_failures_use_the_engine_variant_and_inputs_are_checked():
    engine = GatedEngine(shape=(1, 4))
    engine.gate.set()
    engine.fail = RuntimeError("kernel exploded")
    runner = ModelRunner("m", engine, ModelOptions())
    try:
        with pytest.raises(ModelError) as info:
            await runner.predict(np.ones((1, 4), np.float32))
        assert info.value.variant == ONNX_ERROR and "kernel exploded" in info.value.message
        with pytest.raises(ModelError) as info:
            await runner.predict(np.ones((2, 4), np.float32))
        assert info.value.variant == CORRUPT_INPUT_TENSOR
        assert "expects ValueF32 [1,4], got ValueF32 [2,4]" in info.value.message
    finally:
        await runner.close()


async def test_concurrent_requests_are_gathered_into_one_batch():
    engine = GatedEngine()
    engine.gate.set()
    runner = ModelRunner("m", engine, ModelOptions(max_concurrent=2, batch=BatchSettings(max_items=8,
                                                                                         max_delay_ms=1000)))
    try:
        inputs = [np.full((1, 4), i, np.float32) for i in range(6)] + [np.full((2, 4), 9, np.float32)]
        outputs = await asyncio.gather(*(runner.predict(x) for x in inputs))  # 8 rows: full, no waiting
        assert engine.calls == [(8, 4)] and runner.batches_run == 1
        for x, out in zip(inputs, outputs, strict=True):
            np.testing.assert_array_equal(out[0], x * 2)
    finally:
        await runner.close()


async def test_batching_is_off_when_the_first_dimension_is_fixed():
    runner = ModelRunner("m", GatedEngine(shape=(1, 4)), ModelOptions(batch=BatchSettings()))
    assert runner.batching is None and runner.batching_note and "not dynamic" in runner.batching_note
    await runner.close()


@pytest.fixture(scope="module")
def effnet_engine():
    folder = ensure_models() / "effnetlite0"
    return load_engine(folder / "efficientnet-lite0.onnx", ModelMetadata.parse((folder / "metadata.json").read_bytes()),
                       ModelOptions(), None)


async def test_batched_effnet_results_equal_unbatched(effnet_engine):
    rng = np.random.default_rng(7)
    images = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(6)]
    plain = ModelRunner("effnet", effnet_engine, ModelOptions(max_concurrent=1))
    batched = ModelRunner("effnet", effnet_engine, ModelOptions(max_concurrent=1,
                                                                batch=BatchSettings(max_items=6, max_delay_ms=500)))
    try:
        alone = [await plain.predict(image) for image in images]
        together = await asyncio.gather(*(batched.predict(image) for image in images))
        assert batched.batches_run == 1
        for a, b in zip(alone, together, strict=True):
            assert a[0].shape == b[0].shape == (1, 1000)
            assert float(np.max(np.abs(a[0] - b[0]))) <= 1e-5
            assert int(np.argmax(a[0])) == int(np.argmax(b[0]))
    finally:
        await plain.close()
        await batched.close()


async def test_cancelled_waiter_does_not_break_its_batch():
    engine = GatedEngine()
    engine.gate.set()
    runner = ModelRunner("m", engine, ModelOptions(batch=BatchSettings(max_items=3, max_delay_ms=1000)))
    try:
        a = asyncio.create_task(runner.predict(np.ones((1, 4), np.float32)))
        b = asyncio.create_task(runner.predict(np.full((1, 4), 2, np.float32)))
        await asyncio.sleep(0)
        b.cancel()
        c = await runner.predict(np.full((2, 4), 3, np.float32))  # fills the batch (1 + 1 + 2 > 3: new batch)
        assert c[0].tolist() == [[6] * 4] * 2
        assert (await a)[0].tolist() == [[2] * 4]
    finally:
        await runner.close()


def test_onnx_sessions_spin_only_when_asked():
    """Read back from the live sessions: busy-waiting workers cost the host's actors their cores."""
    folder = ensure_models() / "identity"
    model, meta = next(folder.glob("*.onnx")), ModelMetadata.parse((folder / "metadata.json").read_bytes())
    quiet, spinning = (load_engine(model, meta, ModelOptions(spin_wait=spin), None) for spin in (False, True))
    try:
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            assert quiet.session.get_session_options().get_session_config_entry(key) == "0"
            with pytest.raises(RuntimeError, match="does not have configuration"):
                spinning.session.get_session_options().get_session_config_entry(key)  # onnxruntime's default: spin
    finally:
        quiet.close()
        spinning.close()


@pytest.mark.parametrize("cached", [False, True])
def test_a_run_under_load_takes_the_single_threaded_twin(tmp_path, cached):
    """Automatic threads: alone a run uses the wide session, a run that starts while another is in flight
    the one-thread twin; both answer what onnxruntime answers directly (and the twin reads the cache)."""
    import threading

    import onnxruntime as ort

    folder = ensure_models() / "effnetlite0"
    model, meta = folder / "efficientnet-lite0.onnx", ModelMetadata.parse((folder / "metadata.json").read_bytes())
    cache = tmp_path / "ort-cache"
    if cached:  # a first load writes the optimised graph; the engine under test then loads from it
        load_engine(model, meta, ModelOptions(max_concurrent=1), cache).close()
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: every run is single-threaded already")
    engine = load_engine(model, meta, ModelOptions(max_concurrent=1), cache)
    try:
        assert engine.session.get_session_options().intra_op_num_threads == 2
        assert engine.narrow is not None
        assert engine.narrow.get_session_options().intra_op_num_threads == 1
        x = np.random.default_rng(7).standard_normal((1, 3, 224, 224)).astype(np.float32)
        reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {
            engine.inputs[0].name: x})[0]
        used: list[object] = []
        real_runs = {id(engine.session): engine.session.run, id(engine.narrow): engine.narrow.run}
        inside, release = threading.Event(), threading.Event()

        class Spy:
            def __init__(self, session: object, hold: bool) -> None:
                self.session, self.hold = session, hold

            def run(self, *args: object) -> object:
                used.append(self.session)
                if self.hold:
                    inside.set()
                    release.wait(30)
                return real_runs[id(self.session)](*args)

        wide, narrow = engine.session, engine.narrow
        engine.session, engine.narrow = Spy(wide, hold=True), Spy(narrow, hold=False)  # type: ignore[assignment]
        first = threading.Thread(target=lambda: used.append(engine.run(x)))
        first.start()
        assert inside.wait(30)
        second = engine.run(x)  # starts while the first is in flight
        release.set()
        first.join(30)
        assert used[0] is wide and used[1] is narrow
        np.testing.assert_allclose(second[0], reference, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(used[2][0], reference, rtol=1e-4, atol=1e-5)
        engine.session, engine.narrow = wide, narrow
    finally:
        engine.close()
