"""A model without an input spec in its metadata gets one derived from its own input (issue: bring your
own model), and `GetMetadata`/`ListModels` say which it is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from waft_mlinference.engines import IOSpec
from waft_mlinference.input_spec import DERIVED, GIVEN, derive, input_spec_for
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings
from waft_mlinference.sources import DirectorySource

from waft.interfaces.mlinference import InferenceInput, Tensor
from waft.models import ModelEntry, write_model_dir

F32, U8 = np.dtype(np.float32), np.dtype(np.uint8)


@pytest.mark.parametrize("shape, dtype, encoding, want", [
    ([1, 3, 224, 224], F32, "onnx",
     {"size": [224, 224], "layout": "NCHW", "color": "RGB", "dtype": "f32", "resize": "shorter_side",
      "resize_to": 256, "crop": "center", "mean": [127.5] * 3, "std": [127.5] * 3}),
    ([None, 240, 240, 3], F32, "tf_lite", {"size": [240, 240], "layout": "NHWC", "resize_to": 274}),
    ([1, 28, 28, 1], U8, "tf_lite",
     {"size": [28, 28], "layout": "NHWC", "color": "GRAY", "dtype": "u8", "resize": "stretch", "crop": "none"}),
    ([1, 1, 28, 28], F32, "onnx", {"layout": "NCHW", "color": "GRAY", "resize": "stretch"}),
    ([1, 3, None, None], F32, "onnx", {"size": [224, 224], "layout": "NCHW"}),
    ([1, 3, 3, 3], F32, "onnx", {"layout": "NCHW"}),       # ambiguous: ONNX is channels first
    ([1, 3, 3, 3], F32, "tensorflow", {"layout": "NHWC"}),  # TensorFlow channels last
    ([28, 28, 1], U8, "tf_lite", {"size": [28, 28], "layout": "NHWC", "color": "GRAY"}),  # no batch
])
def test_derived_from_the_input(shape, dtype, encoding, want):
    spec = derive(shape, dtype, encoding)
    assert spec is not None
    assert {k: spec[k] for k in want} == want


@pytest.mark.parametrize("shape, dtype", [
    ([1, 4], F32),              # not an image
    (None, F32),                # rank unknown
    ([1, 5, 7, 9], F32),        # no 1- or 3-channel axis
    ([1, 3, 224, 224], np.dtype(np.int64)),  # an image cannot be fed as int64
])
def test_nothing_derived_when_the_input_is_not_an_image(shape, dtype):
    assert derive(shape, dtype, "onnx") is None


def test_a_given_spec_wins_and_the_original_fields_stand_in_for_a_shapeless_input():
    given = {"size": [10, 10], "layout": "NCHW"}
    assert input_spec_for({"input_spec": given}, IOSpec("x", F32, (1, 3, 224, 224)), "onnx") == (given, GIVEN)
    meta = {"tensor_type": "U8", "tensor_dimensions_in": [1, 28, 28, 1]}
    spec, source = input_spec_for(meta, IOSpec("x", None, None), "tf_lite")
    assert source == DERIVED and spec is not None
    assert (spec["size"], spec["dtype"], spec["color"]) == ([28, 28], "u8", "GRAY")
    assert input_spec_for({"input_spec": None}, IOSpec("x", F32, (1, 4)), "onnx") == (None, None)


def _nhwc_model(path: Path) -> None:
    """An NHWC classifier with no labels: the mean of each channel -> 3 scores (ReduceMean over H, W)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 32, 32, 3])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    node = helper.make_node("ReduceMean", ["image", "axes"], ["scores"], keepdims=0)
    graph = helper.make_graph([node], "nhwc", [x], [y], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)


def test_registry_reports_the_spec_in_use_and_where_it_came_from(tmp_path):
    folder = tmp_path / "models" / "nhwc"
    folder.mkdir(parents=True)
    _nhwc_model(folder / "nhwc.onnx")
    entry = ModelEntry(route="nhwc", bindle_name="nhwc", bindle_version="0.1.0", description="test",
                       model_file="nhwc.onnx", graph_encoding="onnx", dims_in=(1, 32, 32, 3), dims_out=(1, 3),
                       input_name="image", output_name="scores", source="user")
    write_model_dir(entry, folder)

    async def scenario() -> None:
        registry = ModelRegistry(cache_dir=tmp_path / "cache")
        try:
            registry.attach("A", LinkSettings({"nhwc": "nhwc/0.1.0"}), DirectorySource(tmp_path / "models"))
            for model in list(registry.models.values()):
                assert model.task is not None
                await asyncio.wait_for(asyncio.shield(model.task), 60)
            meta = registry.metadata("A", "nhwc")
            assert meta["input_spec_source"] == DERIVED
            assert not meta.get("labels")  # no labels parcel: the post-processor answers index labels
            spec = meta["input_spec"]
            assert (spec["size"], spec["layout"], spec["color"], spec["dtype"]) == ([32, 32], "NHWC", "RGB", "f32")
            listed = registry.describe("A")
            assert listed[0]["inputSpec"] == spec and listed[0]["inputSpecSource"] == DERIVED
            # the model runs on what such a spec produces
            pixels = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
            out = await registry.predict("A", InferenceInput("nhwc", Tensor.from_numpy(
                ((pixels.astype(np.float32) - 127.5) / 127.5).astype(np.float32))))
            assert out.ok, out.error
            want = ((pixels.astype(np.float32) - 127.5) / 127.5).mean(axis=(1, 2))
            np.testing.assert_allclose(out.tensor.to_numpy(), want, rtol=1e-5)
        finally:
            await registry.close()

    asyncio.run(scenario())
