"""The provider's side of the Open Inference Protocol, in-process: a model with two inputs and two outputs fed
by name (Waft's InferenceInput.inputs/outputs), compared with onnxruntime run directly, the refusals that name
what is wrong, and the repository extension's unload/load of one actor's route."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import msgpack
import numpy as np
import pytest
from onnx_models import direct, two_in_two_out
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings
from waft_mlinference.sources import DirectorySource, ModelFiles

from waft.interfaces.mlinference import (
    CONTEXT_NOT_FOUND,
    INVALID_MODEL,
    InferenceInput,
    InferenceOutput,
    ModelError,
    Tensor,
    WireError,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, Path]:
    """`twoio` added as a user adds a model: (the models folder, its bindle id, the model file)."""
    from waft.models.store import add_local

    monkeypatch.setenv("WAFT_HOME", str(tmp_path / "home"))
    file = tmp_path / "twoio.onnx"
    two_in_two_out(file)
    return tmp_path / "home" / "models", str(add_local("twoio", file)["bindle_id"]), file


async def ready(registry: ModelRegistry) -> None:
    for model in list(registry.models.values()):
        if model.task is not None:
            await asyncio.wait_for(asyncio.shield(model.task), 60)


def named(a: np.ndarray, b: np.ndarray, outputs: tuple[str, ...] | None = ()) -> InferenceInput:
    inputs = (("a", Tensor.from_numpy(a)), ("b", Tensor.from_numpy(b)))
    return InferenceInput("twoio", inputs[0][1], inputs=inputs, outputs=outputs)


async def test_two_inputs_by_name_and_the_outputs_asked_for(models, tmp_path: Path) -> None:
    folder, bindle_id, file = models
    registry = ModelRegistry(cache_dir=tmp_path / "cache")
    try:
        registry.attach("A", LinkSettings({"twoio": bindle_id}), DirectorySource(folder))
        await ready(registry)
        rng = np.random.default_rng(3)
        a, b = rng.normal(0, 1, (2, 3)).astype(np.float32), rng.integers(-9, 9, (2, 3)).astype(np.int64)
        want = direct(file, {"a": a, "b": b})
        everything = await registry.predict("A", named(a, b))
        assert everything.ok, everything.error
        assert [n for n, _ in everything.outputs or ()] == ["total", "proj"]  # [] asks for all, model order
        for name, tensor in everything.outputs or ():
            np.testing.assert_array_equal(tensor.to_numpy(), want[name])
        # one output, by name; the wire round trip keeps the names
        proj = InferenceOutput.decode((await registry.predict("A", named(a, b, ("proj",)))).encode())
        assert [n for n, _ in proj.outputs or ()] == ["proj"]
        np.testing.assert_array_equal(proj.tensor.to_numpy(), want["proj"])

        for request, words in [
            (named(a, b, ("nope",)), ["no output nope", "total, proj"]),
            (InferenceInput("twoio", Tensor.from_numpy(a), inputs=(("a", Tensor.from_numpy(a)),)), ["missing: b"]),
            (InferenceInput("twoio", Tensor.from_numpy(a), inputs=(("a", Tensor.from_numpy(a)),
                                                                   ("b", Tensor.from_numpy(b)),
                                                                   ("c", Tensor.from_numpy(a)))), ["unknown: c"]),
            (named(a, b.astype(np.int32)), ["'b'", "ValueI64", "ValueI32"]),
            (InferenceInput("twoio", Tensor.from_numpy(a)), ["2 inputs", "a, b"]),  # one tensor, no names
        ]:
            out = await registry.predict("A", request)
            assert out.error is not None, request
            for word in words:
                assert word in out.error.message, (word, out.error)
        stats = registry.describe("A")[0]["stats"]
        # a request refused before the engine ran is a failure only: every phase counts the same requests
        assert stats["inference_count"] == stats["execution_count"] == 2
        assert {stats["inference_stats"][k]["count"] for k in ("success", "queue", "compute_input", "compute_infer",
                                                               "compute_output")} == {2}
        assert stats["inference_stats"]["fail"]["count"] == 5
    finally:
        await registry.close()


async def test_unload_and_load_one_route(models, tmp_path: Path) -> None:
    folder, bindle_id, _ = models
    registry = ModelRegistry(cache_dir=tmp_path / "cache")
    a, b = np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64)
    try:
        settings = LinkSettings({"twoio": bindle_id})
        registry.attach("A", settings, DirectorySource(folder))
        registry.attach("B", settings, DirectorySource(folder))
        await ready(registry)
        await registry.unload("A", "twoio")
        assert [(e["name"], e["status"]) for e in registry.describe("A")] == [("twoio", "unloaded")]
        refused = await registry.predict("A", named(a, b))
        assert refused.error is not None and refused.error.variant == CONTEXT_NOT_FOUND
        assert "unloaded" in refused.error.message
        assert (await registry.predict("B", named(a, b))).ok  # B's use keeps the model loaded
        assert len(registry.models) == 1
        await registry.unload("A", "twoio")  # again: nothing to do
        await registry.unload("B", "twoio")
        assert registry.models == {}  # the last user gone, the model is unloaded
        registry.load("A", "twoio")
        assert [(e["name"], e["status"]) for e in registry.describe("A")] == [("twoio", "loading")]
        await ready(registry)
        assert (await registry.predict("A", named(a, b))).ok
        assert [e["status"] for e in registry.describe("B")] == ["unloaded"]
        registry.load("A", "twoio")  # loaded already: left as it is
        with pytest.raises(ModelError) as unknown:
            registry.load("A", "nosuch")
        assert unknown.value.variant == CONTEXT_NOT_FOUND
        with pytest.raises(ModelError) as unknown:
            await registry.unload("A", "nosuch")
        assert unknown.value.variant == CONTEXT_NOT_FOUND
    finally:
        await registry.close()


def test_named_tensors_on_the_wire_are_checked() -> None:
    t = Tensor.from_numpy(np.zeros((1, 2), np.float32)).to_wire()
    base = {"model": "m", "tensor": t}

    for extra, words in [({"inputs": [{"name": "a", "tensor": t}, {"name": "a", "tensor": t}]}, "twice"),
                         ({"inputs": [{"tensor": t}]}, "non-empty name"),
                         ({"inputs": {"a": t}}, "list"),
                         ({"outputs": ["x", 3]}, "output names")]:
        with pytest.raises(WireError, match=words):
            InferenceInput.decode(msgpack.packb({**base, **extra}, use_bin_type=True))


class RenamedParcel:
    """A real model folder whose metadata parcel names the model's one input and output otherwise than the model
    does (as a hand-written parcel may): the names /v2 shows are the parcel's."""

    def __init__(self, root: Path) -> None:
        self.inner = DirectorySource(root)
        self.description = self.inner.description

    async def fetch(self, bindle_id: str) -> ModelFiles:
        files = await self.inner.fetch(bindle_id)
        return replace(files, metadata={**(files.metadata or {}), "input_name": "pixels", "output_name": "scores"})


async def test_a_single_input_and_output_answer_to_the_parcels_names(tmp_path: Path) -> None:
    from mlinference_support import ZOO, ensure_models

    registry = ModelRegistry(cache_dir=tmp_path / "cache")
    x = np.array([[1, 2, 3, 4]], np.float32)
    try:
        registry.attach("A", LinkSettings({"identity": ZOO["identity"]}), RenamedParcel(ensure_models()))
        await ready(registry)
        for outputs, names in [((), ["scores"]), (("scores",), ["scores"]), (("1",), ["1"])]:
            out = await registry.predict("A", InferenceInput("identity", Tensor.from_numpy(x),
                                                             inputs=(("pixels", Tensor.from_numpy(x)),),
                                                             outputs=outputs))
            assert out.ok, out.error
            assert [n for n, _ in out.outputs or ()] == names
            assert out.tensor.to_numpy().tolist() == x.tolist()
        by_engine_name = await registry.predict("A", InferenceInput("identity", Tensor.from_numpy(x),
                                                                    inputs=(("0", Tensor.from_numpy(x)),), outputs=()))
        assert by_engine_name.ok
        wrong = await registry.predict("A", InferenceInput("identity", Tensor.from_numpy(x),
                                                           inputs=(("other", Tensor.from_numpy(x)),), outputs=()))
        assert wrong.error is not None and "unknown: other" in wrong.error.message
    finally:
        await registry.close()


class FailingOnce:
    """A real model folder that fails the first fetch as a corrupt download would: the model fails to load."""

    def __init__(self, root: Path) -> None:
        self.inner = DirectorySource(root)
        self.description = self.inner.description
        self.fetches = 0

    async def fetch(self, bindle_id: str) -> ModelFiles:
        self.fetches += 1
        if self.fetches == 1:
            raise ModelError(INVALID_MODEL, "the first download was corrupt")
        return await self.inner.fetch(bindle_id)


async def test_load_of_a_failed_model_loads_it_afresh_for_every_user(models, tmp_path: Path) -> None:
    folder, bindle_id, _ = models
    source = FailingOnce(folder)
    registry = ModelRegistry(cache_dir=tmp_path / "cache")
    a, b = np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64)
    try:
        settings = LinkSettings({"twoio": bindle_id})
        registry.attach("A", settings, source)
        registry.attach("B", settings, source)
        await ready(registry)
        assert [e["status"] for e in registry.describe("B")] == ["failed"]
        model = registry.load("A", "twoio")
        assert model.task is not None
        await model.task
        assert source.fetches == 2 and [e["status"] for e in registry.describe("B")] == ["ready"]
        assert (await registry.predict("B", named(a, b))).ok and (await registry.predict("A", named(a, b))).ok
    finally:
        await registry.close()
