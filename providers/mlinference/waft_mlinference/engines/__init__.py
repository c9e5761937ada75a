"""Inference engines behind one small interface, and the checks every engine shares.

An engine is created once per loaded model (the original re-optimised its graph on every request) and
`run` must be safe to call from several threads at once (the original raced two requests on one
session). Engine modules import onnxruntime/tensorflow only when a model of theirs is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from waft.mlwire import CORRUPT_INPUT_TENSOR, INVALID_ENCODING, ModelError, name_of
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.settings import ModelOptions


@dataclass(frozen=True)
class IOSpec:
    """A declared input or output. `shape` None: unknown rank; a None dim: dynamic (`N`, -1, '?')."""

    name: str
    dtype: np.dtype[Any] | None
    shape: tuple[int | None, ...] | None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "valueType": name_of(self.dtype) if self.dtype is not None else None,
                "dimensions": None if self.shape is None else [d if d is not None else -1 for d in self.shape]}


def shape_text(shape: tuple[int | None, ...] | list[int] | None) -> str:
    if shape is None:
        return "[any rank]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


class Engine(Protocol):
    encoding: str
    #: Where it really runs (`cpu` when a `gpu` model found no GPU).
    target: str
    #: The MlError variant for failures inside the engine (onnxError, tensorflowError).
    error_variant: str
    inputs: list[IOSpec]
    outputs: list[IOSpec]
    #: Set when the requested target could not be honoured (reported by ListModels and health).
    warning: str | None

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        """Feed `array` to the single input; return every output. Thread-safe."""
        ...

    def close(self) -> None: ...


def check_input(model: str, spec: IOSpec, array: np.ndarray) -> None:
    """Refuse a tensor the model did not declare, naming expected and actual (dynamic dims match anything)."""
    wrong_dtype = spec.dtype is not None and array.dtype != spec.dtype
    wrong_shape = spec.shape is not None and (
        len(spec.shape) != array.ndim or any(d is not None and d != a for d, a in zip(spec.shape, array.shape,
                                                                                          strict=True)))
    if wrong_dtype or wrong_shape:
        expected = f"{name_of(spec.dtype) if spec.dtype is not None else 'any type'} {shape_text(spec.shape)}"
        raise ModelError(CORRUPT_INPUT_TENSOR, f"model {model!r} input {spec.name!r} expects {expected}, "
                                               f"got {name_of(array.dtype)} {shape_text(list(array.shape))}")


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
