"""Inference engines behind one small interface, and the checks every engine shares.

An engine is created once per loaded model (the original re-optimised its graph on every request) and
`run` must be safe to call from several threads at once (the original raced two requests on one
session). Engine modules import onnxruntime/tensorflow only when a model of theirs is loaded.
"""

from __future__ import annotations

from pathlib import Path

from waft.interfaces.mlinference import INVALID_ENCODING, ModelError
from waft_mlinference.engines.base import Engine, IOSpec, check_input, shape_text
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.settings import ModelOptions

__all__ = ["Engine", "IOSpec", "check_input", "load_engine", "shape_text"]


def load_engine(path: Path, meta: ModelMetadata, options: ModelOptions, cache_dir: Path | None) -> Engine:
    """Blocking (runs in a thread): build the engine for `meta.graph_encoding`."""
    if meta.graph_encoding == "onnx":
        from waft_mlinference.engines.onnx import OnnxEngine

        return OnnxEngine(path, meta, options, cache_dir)
    if meta.graph_encoding == "tensorflow":
        from waft_mlinference.engines.tf import TfGraphEngine

        return TfGraphEngine(path, meta, options)
    if meta.graph_encoding == "tf_lite":
        from waft_mlinference.engines.tflite import TfLiteEngine

        return TfLiteEngine(path, meta, options)
    raise ModelError(INVALID_ENCODING, f"graph_encoding {meta.graph_encoding!r} is not supported")
