"""`waft models add NAME FILE [--labels FILE] [--spec JSON|FILE] [--push]` for any local model file: the bindle
is built with the original's metadata fields, the given labels and spec, and pushed to a real bindle server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from waft.bindle.client import BindleClient

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "mlinference") not in sys.path:  # its bindle-server fixture
    sys.path.insert(0, str(TESTS / "mlinference"))

pytestmark = pytest.mark.timeout(180)


def tiny_onnx(path: Path) -> None:
    """float [1,3,8,8] -> 2 scores."""
    w = np.ones((3 * 8 * 8, 2), np.float32)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              initializer=[numpy_helper.from_array(w, "w"),
                                           numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)


async def waft(home: Path, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "WAFT_HOME": str(home)}
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "waft", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_add_any_model_with_labels_and_spec_and_push_it(tmp_path: Path) -> None:
    from mlinference_support import bindle_server

    home = tmp_path / "home"
    model = tmp_path / "catdog.onnx"
    tiny_onnx(model)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    spec = {"size": [8, 8], "layout": "NCHW", "resize": "stretch", "crop": "none", "mean": [0, 0, 0],
            "std": [255, 255, 255], "dtype": "f32", "color": "RGB"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    async with bindle_server(tmp_path / "bindle", routes=()) as bindle:
        rc, out, err = await waft(home, "models", "add", "catdog", str(model), "--labels", str(labels),
                                  "--spec", str(tmp_path / "spec.json"), "--push", "--bindle-url", bindle.url,
                                  "-o", "json")
        assert rc == 0, err
        result = json.loads(out)
        assert result["bindle_id"] == "catdog/1.0.0" and result["input_spec"] == "given"
        assert result["pushed"][0]["invoice"] == "created"
        folder = home / "models" / "catdog"
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["graph_encoding"] == "onnx" and meta["model_name"] == "catdog"
        assert meta["input_name"] == "x" and meta["output_name"] == "y"
        assert {k: meta["input_spec"][k] for k in spec} == spec
        assert (folder / "labels.txt").read_text() == "cat\ndog\n"
        async with BindleClient(bindle.url) as client:  # the server holds what was added
            invoice = await client.get_invoice("catdog/1.0.0")
            assert sorted(p.label.name for p in invoice.parcels or []) == ["catdog.onnx", "labels.txt",
                                                                            "metadata.json"]

        # without --spec or --labels: no spec in the metadata (the provider derives one), no labels parcel
        rc, out, err = await waft(home, "models", "add", "plain", str(model), "-o", "json")
        assert rc == 0, err
        assert json.loads(out)["input_spec"] == "derived by the provider"
        assert json.loads((home / "models" / "plain" / "metadata.json").read_text())["input_spec"] is None
        assert not (home / "models" / "plain" / "labels.txt").exists()


@pytest.mark.parametrize("args, words", [
    (["Bad/Name", "{model}"], "model name"),
    (["ok", "{model_txt}"], "unknown model format"),
    (["ok", "{model}", "--spec", '{"layout": "XY"}'], "layout must be one of"),
    (["ok", "{model}", "--spec", '{"size": [0, 8]}'], "size must be"),
    (["ok", "{model}", "--spec", '{"colour": "RGB"}'], "bad --spec"),
    (["ok", "{model}", "--spec", "{not json"], "not JSON"),
    (["ok", "{model}", "--labels", "{missing}"], "no such labels file"),
    (["mobilenetv27", "{model}", "--labels", "{model}"], "model-zoo name"),
    (["identity", "{model}"], "refusing"),  # a pinned zoo name keeps its file check
])
async def test_add_refuses_with_the_reason(tmp_path: Path, args: list[str], words: str) -> None:
    model = tmp_path / "m.onnx"
    tiny_onnx(model)
    (tmp_path / "m.txt").write_text("not a model")
    paths = {"model": str(model), "model_txt": str(tmp_path / "m.txt"), "missing": str(tmp_path / "nope.txt")}
    def fill(arg: str) -> str:
        for key, value in paths.items():
            arg = arg.replace("{" + key + "}", value)
        return arg

    rc, out, err = await waft(tmp_path / "home", "models", "add", *map(fill, args))
    assert rc != 0 and words in err, (out, err)
    assert not (tmp_path / "home" / "models" / "ok").exists()
