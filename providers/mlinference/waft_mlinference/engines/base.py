"""What every engine offers (`Engine`, `IOSpec`) and the input check they share.

Apart from the package `__init__` so the engine modules can import it while `load_engine` imports
them: one direction only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from waft.interfaces.mlinference import CORRUPT_INPUT_TENSOR, ModelError, TensorSpec, name_of


@dataclass(frozen=True)
class IOSpec:
    """A declared input or output. `shape` None: unknown rank; a None dim: dynamic (`N`, -1, '?')."""

    name: str
    dtype: np.dtype[Any] | None
    shape: tuple[int | None, ...] | None

    def spec(self) -> TensorSpec:
        """As the contract states it: a dynamic dim is -1."""
        return TensorSpec(self.name, name_of(self.dtype) if self.dtype is not None else None,
                          None if self.shape is None else [d if d is not None else -1 for d in self.shape])


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

    def run_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Feed one array per input, by the names `inputs` declares (a model with several: /v2 sends each by
        name); return every output, in `outputs`' order. Thread-safe."""
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
