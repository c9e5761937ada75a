"""Small ONNX models built with onnx.helper for the tests of several inputs and outputs and of classification,
with the reference: onnxruntime run directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

LABELS = [f"class-{c}" for c in "abcdefghij"]


def save_model(graph: onnx.GraphProto, path: Path) -> None:
    """A graph as a checked opset-18 model file (IR 8: what the pinned onnxruntime reads)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def two_in_two_out(path: Path) -> None:
    """a: FP32 [2,3], b: INT64 [2,3] -> total = a + float(b) (FP32 [2,3]), proj = a @ W (FP32 [2,4])."""
    w = np.random.default_rng(5).normal(0, 1, (3, 4)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["a", "bf"], ["total"]),
             helper.make_node("MatMul", ["a", "w"], ["proj"])]
    graph = helper.make_graph(nodes, "two_io",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("b", TensorProto.INT64, [2, 3])],
                              [helper.make_tensor_value_info("total", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("proj", TensorProto.FLOAT, [2, 4])],
                              initializer=[numpy_helper.from_array(w, "w")])
    save_model(graph, path)


def scorer(path: Path) -> None:
    """x: FP32 [2,6] -> scores FP32 [2,10]: two rows of ten class scores."""
    w = np.random.default_rng(6).normal(0, 1, (6, 10)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["scores"])], "scorer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 10])],
                              initializer=[numpy_helper.from_array(w, "w")])
    save_model(graph, path)


def direct(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
