"""The metadata parcel of a model bindle, parsed the way the original's `bindle_loader.rs` parsed it.

Every field has a default (serde `default` in the original), unknown fields are kept (the API and the
pre-processor read `input_spec`, `labels`, `outputs_probabilities` from GetMetadata), and a bad value
fails the load with the MlError variant the original used: `invalidModel` for a bad tensor type,
`invalidEncoding` for a graph encoding we cannot run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from waft.interfaces.mlinference import INVALID_ENCODING, INVALID_MODEL, ModelError, value_type_name

ENCODINGS = ("onnx", "tensorflow", "tf_lite")
KNOWN_ENCODINGS = (*ENCODINGS, "open_vino")
TARGETS = ("cpu", "gpu", "tpu")


@dataclass(frozen=True)
class ModelMetadata:
    raw: dict[str, Any]
    graph_encoding: str = "onnx"
    execution_target: str = "cpu"
    tensor_type: str = "ValueF32"
    input_name: str | None = None
    output_name: str | None = None

    @classmethod
    def parse(cls, data: bytes | str | dict[str, Any] | None) -> ModelMetadata:
        if data is None:
            return cls({})
        if isinstance(data, dict):
            raw = data
        else:
            try:
                raw = json.loads(data)
            except ValueError as exc:
                raise ModelError(INVALID_MODEL, f"metadata parcel is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ModelError(INVALID_MODEL, "metadata parcel must be a JSON object")
        encoding = str(raw.get("graph_encoding") or "onnx").lower()
        if encoding not in KNOWN_ENCODINGS:
            raise ModelError(INVALID_ENCODING, f"unknown graph_encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
        if encoding not in ENCODINGS:
            raise ModelError(INVALID_ENCODING, f"graph_encoding {encoding!r} is not supported by this provider; "
                                               f"supported: {', '.join(ENCODINGS)}")
        target = str(raw.get("execution_target") or "cpu").lower()
        if target not in TARGETS:
            raise ModelError(INVALID_MODEL, f"unknown execution_target {target!r}; known: {', '.join(TARGETS)}")
        try:
            tensor_type = value_type_name(str(raw.get("tensor_type") or "F32"))
        except ModelError as exc:
            raise ModelError(INVALID_MODEL, f"metadata tensor_type: {exc.message}") from None
        return cls(raw, encoding, target, tensor_type, _name(raw.get("input_name")), _name(raw.get("output_name")))


def _name(value: object) -> str | None:
    return str(value) if value not in (None, "") else None
