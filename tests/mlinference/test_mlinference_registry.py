"""Loading in the background, sharing and unloading, load failures, the ORT optimised-model cache, the
GPU fallback and the TFLite engine — in-process, without a host."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlinference_support import ZOO, ensure_models, health_models, states
from waft_mlinference.engines import load_engine
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings, ModelOptions
from waft_mlinference.sources import DirectorySource, ModelFiles

from waft.interfaces.mlinference import (
    CONTEXT_NOT_FOUND,
    INVALID_ENCODING,
    INVALID_MODEL,
    MODEL_LOADING,
    InferenceInput,
    ModelError,
    ModelState,
    Normalize,
    Tensor,
)

pytestmark = pytest.mark.timeout(180)
X4 = np.array([[1, 2, 3, 4]], np.float32)


class GatedSource:
    """A directory source whose fetches wait for `gate`: the model stays `loading` until released."""

    def __init__(self, root: Path) -> None:
        self.inner = DirectorySource(root)
        self.description = self.inner.description
        self.gate = asyncio.Event()
        self.fetches = 0

    async def fetch(self, bindle_id: str) -> ModelFiles:
        self.fetches += 1
        await self.gate.wait()
        return await self.inner.fetch(bindle_id)


async def settled(registry: ModelRegistry) -> None:
    for model in list(registry.models.values()):
        if model.task is not None:
            await asyncio.wait_for(asyncio.shield(model.task), 60)


def request(model: str, array: np.ndarray = X4) -> InferenceInput:
    return InferenceInput(model, Tensor.from_numpy(array))


async def test_loading_then_ready_shared_and_unloaded_with_the_last_link(tmp_path):
    source = GatedSource(ensure_models())
    registry = ModelRegistry(cache_dir=tmp_path)
    settings = LinkSettings({"identity": ZOO["identity"]})
    try:
        registry.attach("A", settings, source)
        registry.attach("B", settings, source)
        assert source.fetches <= 1 and len(registry.models) == 1  # one model for both actors
        out = await registry.predict("A", request("identity"))
        assert out.error is not None and out.error.variant == MODEL_LOADING
        report = registry.health()
        assert (report.healthy, report.message) == (True, "healthy: loading: identity")
        assert states(report) == [("identity", "loading")]
        source.gate.set()
        await settled(registry)
        assert (await registry.predict("B", request("identity"))).tensor.to_numpy().tolist() == X4.tolist()

        assert await registry.detach("A") == []
        unknown = await registry.predict("A", request("identity"))
        assert unknown.error is not None and unknown.error.variant == CONTEXT_NOT_FOUND
        assert (await registry.predict("B", request("identity"))).ok
        assert await registry.detach("B") == [ZOO["identity"]]
        report = registry.health()
        assert registry.models == {} and (report.healthy, report.message) == (True, "healthy: no models linked")
        assert states(report) == []
    finally:
        source.gate.set()
        await registry.close()


async def test_u8_pixels_with_normalize_reach_the_model_as_f32(tmp_path):
    """The provider applies a request's normalisation before the model sees it (identity answers its input)."""
    registry = ModelRegistry(cache_dir=tmp_path)
    try:
        registry.attach("A", LinkSettings({"identity": ZOO["identity"]}), DirectorySource(ensure_models()))
        await settled(registry)
        pixels = np.array([[0, 127, 128, 255]], np.uint8)
        normalize = Normalize((127.0,) * 4, (128.0, 128.0, 64.0, 2.0), 1)
        out = await registry.predict("A", InferenceInput("identity", Tensor.from_numpy(pixels), 0, normalize))
        assert out.ok, out.error
        assert out.tensor.to_numpy().tolist() == [[-127 / 128, 0.0, 1 / 64, 64.0]]
        wrong = await registry.predict("A", InferenceInput("identity", Tensor.from_numpy(X4), 0, normalize))
        assert wrong.error is not None and "ValueU8 pixels" in wrong.error.message
    finally:
        await registry.close()


async def test_detach_while_loading_cancels_the_load(tmp_path):
    source = GatedSource(ensure_models())
    registry = ModelRegistry(cache_dir=tmp_path)
    registry.attach("A", LinkSettings({"identity": ZOO["identity"]}), source)
    task = next(iter(registry.models.values())).task
    await registry.detach("A")
    assert task is not None and task.cancelled()
    await registry.close()


def _copy_model(tmp_path: Path, route: str) -> Path:
    root = tmp_path / "models"
    shutil.copytree(ensure_models() / route, root / route)
    return root


@pytest.mark.parametrize("damage, variant, fragment", [
    ("corrupt", INVALID_MODEL, "onnxruntime cannot load"),
    ("open_vino", INVALID_ENCODING, "'open_vino' is not supported"),
    ("bad_type", INVALID_MODEL, "unsupported value type 'Q7'"),
])
async def test_load_failures_answer_their_variant_and_show_in_health(tmp_path, damage, variant, fragment):
    root = _copy_model(tmp_path, "identity")
    folder = root / "identity"
    meta = json.loads((folder / "metadata.json").read_text())
    if damage == "corrupt":
        (folder / "identity_input_output.onnx").write_bytes(b"not an onnx model")
    elif damage == "open_vino":
        meta["graph_encoding"] = "open_vino"
    else:
        meta["tensor_type"] = "Q7"
    (folder / "metadata.json").write_text(json.dumps(meta))  # content need not match the invoice sha here
    registry = ModelRegistry(cache_dir=tmp_path / "cache")
    try:
        registry.attach("A", LinkSettings({"identity": ZOO["identity"]}, model_dir=root))
        await settled(registry)
        out = await registry.predict("A", request("identity"))
        assert out.error is not None and out.error.variant == variant and fragment in out.error.message
        report = registry.health()
        assert not report.healthy and "failed: identity" in report.message and fragment in report.message
        [status] = health_models(report)
        assert status.state is ModelState.FAILED and status.error_variant == variant and fragment in status.reason
        assert registry.describe("A")[0]["status"] == "failed"
    finally:
        await registry.close()


async def test_unknown_bindle_in_the_directory_fails_the_model(tmp_path):
    registry = ModelRegistry(cache_dir=tmp_path)
    try:
        registry.attach("A", LinkSettings({"x": "nothing/0.0.1"}, model_dir=ensure_models()))
        await settled(registry)
        model = registry.lookup("A", "x")
        assert model.state is ModelState.FAILED and model.error is not None
        assert "nothing/0.0.1 not found under" in model.error.message
    finally:
        await registry.close()


def test_onnx_optimised_model_is_cached_and_gives_identical_results(tmp_path):
    folder = ensure_models() / "effnetlite0"
    meta = ModelMetadata.parse((folder / "metadata.json").read_bytes())
    image = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    first = load_engine(folder / "efficientnet-lite0.onnx", meta, ModelOptions(), tmp_path)
    assert not first.optimized_from_cache and list(tmp_path.glob("*.onnx"))
    assert not list(tmp_path.glob("*.part"))
    second = load_engine(folder / "efficientnet-lite0.onnx", meta, ModelOptions(), tmp_path)
    assert second.optimized_from_cache
    np.testing.assert_array_equal(first.run(image)[0], second.run(image)[0])


def test_gpu_request_without_cuda_falls_back_to_cpu_with_a_warning(tmp_path):
    import onnxruntime as ort

    folder = ensure_models() / "identity"
    meta = ModelMetadata.parse({**json.loads((folder / "metadata.json").read_text()), "execution_target": "gpu"})
    engine = load_engine(folder / "identity_input_output.onnx", meta, ModelOptions(), None)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert engine.target == "gpu" and engine.warning is None
    else:
        assert engine.target == "cpu" and engine.warning and "no CUDAExecutionProvider" in engine.warning
    assert engine.run(X4)[0].tolist() == X4.tolist()


def test_tflite_engine_with_a_dynamic_batch(tmp_path):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def affine(x):
        return x * 2.0 + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions([affine.get_concrete_function()], affine)
    path = tmp_path / "affine.tflite"
    path.write_bytes(converter.convert())
    meta = ModelMetadata.parse({"graph_encoding": "tf_lite"})
    engine = load_engine(path, meta, ModelOptions(max_concurrent=2), None)
    assert engine.inputs[0].shape == (None, 3)
    for rows in (1, 4, 2):
        x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
        np.testing.assert_array_equal(engine.run(x)[0], x * 2 + 1)


def test_tflite_quantized_outputs_are_answered_dequantized(tmp_path):
    """A full-integer (uint8 in, uint8 out) TF Lite model, as the original's digit and edge-TPU models are: the
    input is fed as is, the output comes back as `scale * (q - zero_point)` in f32, computed here from
    TensorFlow's own interpreter and the quantization it reports."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 1], tf.float32)])
    def scores(x):
        return tf.nn.softmax(tf.reshape(x, [1, 16]) * 0.05)

    def representative():
        for seed in range(8):
            yield [np.random.default_rng(seed).uniform(0, 255, (1, 4, 4, 1)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([scores.get_concrete_function()], scores)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path = tmp_path / "q.tflite"
    path.write_bytes(converter.convert())
    engine = load_engine(path, ModelMetadata.parse({"graph_encoding": "tf_lite"}), ModelOptions(), None)
    assert engine.inputs[0].dtype == np.uint8 and engine.outputs[0].dtype == np.float32
    pixels = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1) * 15
    got = engine.run(pixels)[0]
    reference = tf.lite.Interpreter(model_path=str(path))
    reference.allocate_tensors()
    reference.set_tensor(reference.get_input_details()[0]["index"], pixels)
    reference.invoke()
    out = reference.get_output_details()[0]
    scale, zero = out["quantization"]
    assert out["dtype"] == np.uint8 and scale > 0
    want = np.float32(scale) * (reference.get_tensor(out["index"]).astype(np.float32) - np.float32(zero))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert abs(float(got.sum()) - 1.0) < 0.05  # a quantized softmax: the scores are probabilities again


def test_metadata_defaults_like_the_original():
    meta = ModelMetadata.parse(b"{}")
    assert (meta.graph_encoding, meta.execution_target, meta.tensor_type) == ("onnx", "cpu", "ValueF32")
    with pytest.raises(ModelError) as info:
        ModelMetadata.parse(b'{"graph_encoding": "caffe"}')
    assert info.value.variant == INVALID_ENCODING
