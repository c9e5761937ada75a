"""The original's test models run as the original's tests expect, and are the original's exact bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from waft import models


def test_identity_maps_input_to_itself(built_models: Path) -> None:
    entry = models.get("identity")
    session = ort.InferenceSession(str(built_models / "identity" / entry.model_file),
                                   providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {entry.input_name: np.array([[1, 2, 3, 4]], np.float32)})
    assert out.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    assert [i.shape for i in session.get_inputs()] == [[1, 4]]


def test_plus3_adds_three_in_tensorflow(built_models: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString((built_models / "plus3" / "plus3.pb").read_bytes())
    assert [(n.name, n.op) for n in graph_def.node] == [("input", "Placeholder"), ("three", "Const"),
                                                        ("output", "Add")]
    graph = tf.Graph()
    with graph.as_default():
        tf1.import_graph_def(graph_def, name="")
    with tf1.Session(graph=graph) as session:
        out = session.run("output:0", {"input:0": np.array([[1, 2, 3, 4]], np.float32)})
    assert out.tolist() == [[4.0, 5.0, 6.0, 7.0]]


def test_tiny_models_are_the_originals_bytes(built_models: Path) -> None:
    """The original invoices pin size and sha256; the rebuilt files must match them exactly."""
    for route, size, prefix in (("identity", 112, "eb68abfa"), ("plus3", 129, "62e74a26")):
        entry = models.get(route)
        data = (built_models / route / entry.model_file).read_bytes()
        assert len(data) == size == entry.size
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        assert entry.sha256.startswith(prefix)
