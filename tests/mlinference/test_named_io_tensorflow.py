"""Several inputs and outputs for the two TensorFlow encodings, as for ONNX (test_named_io_and_repository.py): a
TF Lite model and a TF1 frozen graph of two inputs (FP32 + INT32) and two outputs, added as a user adds a model,
fed by name through the registry (what /v2 sends) and compared with TensorFlow run directly; a request that
names an input the model lacks, or leaves one out, is refused naming the model's inputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from tf_models import direct_graph, direct_lite, frozen_graph, lite_model, short_name
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings
from waft_mlinference.sources import DirectorySource

from waft.interfaces.mlinference import CORRUPT_INPUT_TENSOR, InferenceInput, Tensor

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("suffix", [".pb", ".tflite"])
async def test_two_inputs_and_two_outputs_by_name(suffix: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from waft.models.store import add_local

    monkeypatch.setenv("WAFT_HOME", str(tmp_path / "home"))
    file = tmp_path / f"twoio{suffix}"
    (frozen_graph if suffix == ".pb" else lite_model)(file)
    bindle_id = str(add_local("twoio", file)["bindle_id"])
    rng = np.random.default_rng(3)
    feeds = {"a": rng.normal(0, 1, (2, 3)).astype(np.float32), "b": rng.integers(-9, 9, (2, 3)).astype(np.int32)}
    want = (direct_graph if suffix == ".pb" else direct_lite)(file, feeds)

    registry = ModelRegistry(cache_dir=tmp_path / "cache")
    try:
        registry.attach("A", LinkSettings({"twoio": bindle_id}), DirectorySource(tmp_path / "home" / "models"))
        for model in list(registry.models.values()):
            if model.task is not None:
                await asyncio.wait_for(asyncio.shield(model.task), 120)
        meta = registry.metadata("A", "twoio")
        inputs = [i["name"] for i in meta["inputs"]]
        outputs = [o["name"] for o in meta["outputs"]]
        assert len(inputs) == 2 and sorted(outputs) == sorted(want), meta  # the model's own names, as /v2 lists
        by_name = {name: feeds[short_name(name, feeds)] for name in inputs}

        def request(names: list[str], wanted: tuple[str, ...] = ()) -> InferenceInput:
            named = tuple((n, Tensor.from_numpy(by_name.get(n, feeds["a"]))) for n in names)
            return InferenceInput("twoio", named[0][1], inputs=named, outputs=wanted)

        everything = await registry.predict("A", request(inputs))
        assert everything.ok, everything.error
        assert [n for n, _ in everything.outputs or ()] == outputs
        for name, tensor in everything.outputs or ():
            np.testing.assert_array_equal(tensor.to_numpy(), want[name])
        one = await registry.predict("A", request(inputs[::-1], (outputs[-1],)))  # any order of inputs
        assert [n for n, _ in one.outputs or ()] == [outputs[-1]]
        np.testing.assert_array_equal(one.tensor.to_numpy(), want[outputs[-1]])

        for wrong, words in [(request(inputs[:1]), ["missing: " + inputs[1]]),
                             (request([*inputs, "c"]), ["unknown: c"]),
                             (InferenceInput("twoio", Tensor.from_numpy(feeds["a"])), ["2 inputs", inputs[0]])]:
            refused = await registry.predict("A", wrong)
            assert refused.error is not None, wrong
            for word in words:
                assert word in refused.error.message, (word, refused.error)
        assert (await registry.predict("A", request(inputs[:1]))).error.variant == CORRUPT_INPUT_TENSOR  # 400
    finally:
        await registry.close()
