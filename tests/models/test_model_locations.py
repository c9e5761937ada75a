"""Where `waft.models` looks: settings, never the source tree; the labels from the package; graph names without onnx."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from waft import models
from waft.errors import WaftError
from waft.models.onnx_names import OnnxFormatError, graph_io_names, model_io_names


def _onnx_reference(path: Path) -> tuple[str | None, str | None]:
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    return (inputs[0] if inputs else None), (graph.output[0].name if graph.output else None)


def test_graph_names_agree_with_onnx_on_every_built_model(built_models: Path) -> None:
    files = sorted(built_models.glob("*/*.onnx"))
    assert len(files) >= 4
    for path in files:
        assert model_io_names(path) == _onnx_reference(path), path


def test_weights_listed_as_inputs_are_not_the_input() -> None:
    import numpy as np

    weights = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 4]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weights])
    assert graph_io_names(helper.make_model(graph).SerializeToString()) == ("x", "y")


@pytest.mark.parametrize("data", [b"", b"\x0a\xff", b"<html>404</html>", b"\xff" * 20, b"\x3a\x05ab"])
def test_what_is_not_onnx_is_refused(data: bytes) -> None:
    with pytest.raises(OnnxFormatError) as info:
        graph_io_names(data)
    assert isinstance(info.value, WaftError)


def test_models_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAFT_HOME", str(tmp_path / "home"))
    for name in ("WAFT_MODELS_DIR", "WAFT_MODELS_BUILD"):
        monkeypatch.delenv(name, raising=False)
    assert models.build_dir() == tmp_path / "home" / "models"
    assert models.build_dir(default=tmp_path / "b") == tmp_path / "b"
    monkeypatch.setenv("WAFT_MODELS_BUILD", str(tmp_path / "old"))
    assert models.build_dir() == tmp_path / "old"
    monkeypatch.setenv("WAFT_MODELS_DIR", str(tmp_path / "new"))
    assert models.build_dir() == tmp_path / "new"
    assert models.build_dir(tmp_path / "flag") == tmp_path / "flag"


def test_labels_come_from_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WAFT_IMAGENET_LABELS", raising=False)
    path = models.imagenet_labels_file()
    assert path == Path(str(resources.files("waft.models") / "imagenet_synsets.txt"))
    lines = path.read_text().splitlines()
    assert len(lines) == 1000 and lines[0].startswith("n01440764 tench")
    monkeypatch.setenv("WAFT_IMAGENET_LABELS", str(tmp_path / "absent.txt"))
    with pytest.raises(models.LabelsNotFound, match=r"absent\.txt"):
        models.imagenet_labels_file()


def test_status_when_models_dir_is_the_home_one(built_models: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Built and imported copies in one $WAFT_HOME/models: the registry's source tells them apart."""
    home = tmp_path / "home"
    monkeypatch.setenv("WAFT_HOME", str(home))
    monkeypatch.delenv("WAFT_MODELS_DIR", raising=False)
    shutil.copytree(built_models / "identity", home / "models" / "identity")
    status = {route: models.local_status(entry)[0] for route, entry in models.REGISTRY.items()}
    assert status["identity"] == "built" and status["plus3"] == "not built" and status["mobilenetv27"] == "missing"
    # with the checkout's build as the models dir, the copy in $WAFT_HOME/models is an import (and wins)
    assert models.local_status(models.get("identity"), built_models) == ("imported", home / "models" / "identity")
    assert models.local_status(models.get("plus3"), built_models) == ("built", built_models / "plus3")
