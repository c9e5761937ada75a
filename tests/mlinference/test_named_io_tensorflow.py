"""Several inputs and outputs for the two TensorFlow encodings, as for ONNX (test_named_io_and_repository.py): a
TF Lite model and a TF1 frozen graph of two inputs (FP32 + INT32) and two outputs, added as a user adds a model,
fed by name through the registry (what /v2 sends) and compared with TensorFlow run directly; a request that
names an input the model lacks, or leaves one out, is refused naming the model's inputs."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import numpy as np
import pytest
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings
from waft_mlinference.sources import DirectorySource

from waft.interfaces.mlinference import CORRUPT_INPUT_TENSOR, InferenceInput, Tensor

pytestmark = pytest.mark.timeout(240)
W = np.random.default_rng(5).normal(0, 1, (3, 4)).astype(np.float32)


def tf():  # type: ignore[no-untyped-def]
    import tensorflow

    return tensorflow


def frozen_graph(path: Path) -> None:
    """a: FP32 [2,3], b: INT32 [2,3] -> total = a + float(b), proj = a @ W: two Placeholders, two sinks."""
    v1 = tf().compat.v1
    graph = v1.Graph()
    with graph.as_default():
        a = v1.placeholder(v1.float32, [2, 3], name="a")
        b = v1.placeholder(v1.int32, [2, 3], name="b")
        v1.identity(a + v1.cast(b, v1.float32), name="total")
        v1.identity(v1.matmul(a, v1.constant(W)), name="proj")
    path.write_bytes(graph.as_graph_def().SerializeToString())


def lite_model(path: Path) -> None:
    """The same computation converted by TF Lite's converter (its own tensor names)."""
    t = tf()

    @t.function(input_signature=[t.TensorSpec([2, 3], t.float32, name="a"), t.TensorSpec([2, 3], t.int32, name="b")])
    def two(a, b):  # type: ignore[no-untyped-def]
        return {"total": a + t.cast(b, t.float32), "proj": t.matmul(a, t.constant(W))}

    converter = t.lite.TFLiteConverter.from_concrete_functions([two.get_concrete_function()], two)
    path.write_bytes(converter.convert())


def direct_graph(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    v1 = tf().compat.v1
    graph_def = v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    graph = v1.Graph()
    with graph.as_default():
        v1.import_graph_def(graph_def, name="")
    with v1.Session(graph=graph) as session:
        got = session.run(["total:0", "proj:0"], {f"{k}:0": v for k, v in feeds.items()})
    return {"total": got[0], "proj": got[1]}


def direct_lite(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """By the interpreter's own names: the input whose name ends in the signature's name gets that array."""
    with warnings.catch_warnings():  # tensorflow's interpreter is deprecated in favour of LiteRT's
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf().lite.Interpreter(model_content=path.read_bytes())
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], feeds[_short(detail["name"], feeds)])
    interpreter.invoke()
    return {d["name"]: np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()}


def _short(name: str, feeds: dict[str, np.ndarray]) -> str:
    (short,) = [k for k in feeds if name.removesuffix(":0").endswith(k)]
    return short


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
        by_name = {name: feeds[_short(name, feeds)] for name in inputs}

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
