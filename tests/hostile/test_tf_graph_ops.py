"""A TF1 GraphDef is a program: one that reads or writes files (or runs Python) must not load on the
provider's host. Only an allow-list of tensor ops is accepted; the project's own plus3 graph still loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from waft_mlinference.engines import load_engine
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.settings import ModelOptions

from waft.interfaces.mlinference import INVALID_MODEL, ModelError

ROOT = Path(__file__).resolve().parents[2]
META = ModelMetadata.parse({"graph_encoding": "tensorflow"})


def _graph(path: Path, build) -> Path:  # type: ignore[no-untyped-def]
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with graph.as_default():
        build(tf)
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def test_a_graph_that_writes_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "owned.txt"

    def build(tf):  # type: ignore[no-untyped-def]
        x = tf.placeholder(tf.float32, [1], name="x")
        write = tf.io.write_file(str(target), tf.strings.as_string(x[0]))
        with tf.control_dependencies([write]):
            tf.identity(x, name="y")

    path = _graph(tmp_path / "writer.pb", build)
    with pytest.raises(ModelError) as info:
        load_engine(path, META, ModelOptions(), None)
    assert info.value.variant == INVALID_MODEL and "WriteFile" in info.value.message
    assert not target.exists()


def test_a_graph_that_reads_files_is_refused_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def build(tf):  # type: ignore[no-untyped-def]
        name = tf.placeholder(tf.string, [], name="x")
        tf.identity(tf.io.read_file(name), name="y")

    path = _graph(tmp_path / "reader.pb", build)
    with pytest.raises(ModelError, match="ReadFile"):
        load_engine(path, META, ModelOptions(), None)
    monkeypatch.setenv("WAFT_TF_EXTRA_OPS", "ReadFile")  # the operator's explicit choice
    engine = load_engine(path, META, ModelOptions(), None)
    assert engine.inputs[0].name == "x"


def test_the_projects_own_graph_loads() -> None:
    plus3 = next((ROOT / "build" / "models" / "plus3").glob("*.pb"))
    engine = load_engine(plus3, META, ModelOptions(), None)
    x = np.array([[1, 2, 3, 4]], np.float32)
    np.testing.assert_allclose(engine.run(x)[0], x + 3)
