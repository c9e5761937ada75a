"""Small TensorFlow models of two inputs (FP32 + INT32) and two outputs, as a TF1 frozen graph and as TF Lite,
for the tests of several inputs and outputs on the TensorFlow encodings, with the reference: TensorFlow run
directly. TensorFlow is imported on first use (seconds)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

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
        interpreter.set_tensor(detail["index"], feeds[short_name(detail["name"], feeds)])
    interpreter.invoke()
    return {d["name"]: np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()}


def short_name(name: str, feeds: dict[str, np.ndarray]) -> str:
    (short,) = [k for k in feeds if name.removesuffix(":0").endswith(k)]
    return short
