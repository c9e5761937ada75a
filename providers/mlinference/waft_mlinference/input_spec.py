"""The input spec of a model whose metadata gives none: derived from the model's own input.

A user who brings a model should get a working `/matches` without writing a spec. The pre-processor
needs size, layout, colour, dtype and normalisation; the model's declared input answers all but the
normalisation, which takes a documented default. What was derived is reported (`input_spec_source`)
so `GET /models` says whether the spec is the model author's or a guess.

Rules (rank-4 image inputs, batch first; a rank-3 input is taken as batch-less):
- layout: NCHW when the second dimension is 1 or 3 and the last is not; NHWC when the last is 1 or 3;
  when both are (a 3x3 image?) TensorFlow and TF Lite models are NHWC, ONNX ones NCHW.
- size: H x W; a dynamic side is 224.
- colour: one channel is GRAY (Pillow's convert("L")), three are RGB.
- dtype: uint8 inputs (TF Lite's quantized image models) get the raw pixels; float inputs
  `(x - 127.5) / 127.5`, the [-1, 1] range of the TF Lite / Keras image classifiers; other types
  cannot be fed from an image and get no spec (the image routes then answer what the model expects).
- geometry: sides of 64 and more are photos (shorter side to size / 0.875, centre crop, as the
  ImageNet models were evaluated); smaller inputs (digits, icons) are stretched to the size.
The original's metadata fields (`tensor_dimensions_in`, `tensor_type`) stand in for the model's input
when the engine does not declare a shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from waft.interfaces.mlinference import VALUE_TYPES, value_type_name
from waft_mlinference.engines import IOSpec

GIVEN, DERIVED = "given", "derived"
DEFAULT_SIDE = 224
PHOTO_MIN_SIDE = 64
CROP_FRACTION = 0.875
FLOAT_MEAN = FLOAT_STD = 127.5


def input_spec_for(meta: dict[str, Any], model_input: IOSpec | None, graph_encoding: str
                   ) -> tuple[dict[str, Any] | None, str | None]:
    """(spec, "given" | "derived"), or (None, None) when the metadata has none and none can be derived."""
    given = meta.get("input_spec")
    if isinstance(given, dict):
        return given, GIVEN
    shape, dtype = _declared(meta, model_input)
    spec = derive(shape, dtype, graph_encoding)
    return (spec, DERIVED) if spec is not None else (None, None)


def _declared(meta: dict[str, Any], model_input: IOSpec | None) -> tuple[list[int | None] | None, np.dtype[Any] | None]:
    shape: list[int | None] | None = None
    dtype = model_input.dtype if model_input is not None else None
    if model_input is not None and model_input.shape is not None:
        shape = list(model_input.shape)
    dims = meta.get("tensor_dimensions_in")
    if (shape is None or all(d is None for d in shape[1:])) and isinstance(dims, list) and dims and all(
            isinstance(d, int) and not isinstance(d, bool) for d in dims):
        shape = [d if d > 0 else None for d in dims]
    if dtype is None and isinstance(meta.get("tensor_type"), str):
        try:
            dtype = VALUE_TYPES[value_type_name(meta["tensor_type"])]
        except Exception:
            dtype = None
    return shape, dtype


def derive(shape: list[int | None] | None, dtype: np.dtype[Any] | None, graph_encoding: str) -> dict[str, Any] | None:
    if shape is None or len(shape) not in (3, 4):
        return None
    dims = shape[1:] if len(shape) == 4 else shape
    first, last = dims[0], dims[2]
    channels_first = first in (1, 3)
    channels_last = last in (1, 3)
    if channels_first and channels_last:
        nhwc = graph_encoding in ("tensorflow", "tf_lite")
    elif channels_first or channels_last:
        nhwc = channels_last
    else:
        return None  # no dimension looks like 1 or 3 channels: not an image input
    channels = last if nhwc else first
    height, width = (dims[0], dims[1]) if nhwc else (dims[1], dims[2])
    height, width = height or DEFAULT_SIDE, width or DEFAULT_SIDE
    if dtype is not None and np.dtype(dtype) == np.uint8:
        numeric: dict[str, Any] = {"dtype": "u8", "mean": [0, 0, 0], "std": [1, 1, 1]}
    elif dtype is None or np.dtype(dtype) == np.float32:
        numeric = {"dtype": "f32", "mean": [FLOAT_MEAN] * 3, "std": [FLOAT_STD] * 3}
    else:
        return None
    spec: dict[str, Any] = {"size": [height, width], "layout": "NHWC" if nhwc else "NCHW",
                            "color": "GRAY" if channels == 1 else "RGB", "resample": "bilinear", **numeric}
    if min(height, width) >= PHOTO_MIN_SIDE:
        spec |= {"resize": "shorter_side", "resize_to": round(min(height, width) / CROP_FRACTION), "crop": "center"}
    else:
        spec |= {"resize": "stretch", "resize_to": max(height, width), "crop": "none"}
    return spec
