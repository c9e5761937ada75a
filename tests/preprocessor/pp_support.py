"""Shared setup of the pre-processor tests: the built actor, a waPC instance, and the Pillow reference.

The actor runs in Waft's waPC binding (no NATS), as the other actor tests do; the reference pipeline is
Pillow + numpy, which is what the actor is held to (docs/interfaces.md, MlPreprocessing.Convert).
"""

from __future__ import annotations

import functools
import io
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from PIL import Image

ACTORS_TESTS = Path(__file__).resolve().parents[1] / "actors"
if str(ACTORS_TESTS) not in sys.path:
    sys.path.insert(0, str(ACTORS_TESTS))

from actor_support import compiled  # noqa: E402

from waft.host.wapc import HostCallError, Limits, WapcInstance  # noqa: E402
from waft.models import draft_scale  # noqa: E402

CONVERT = "MlPreprocessing.Convert"
DECODE = "MlPreprocessing.Decode"
INFLATE = "Debug.Inflate"
MEMORY = 256 << 20
DEFAULT_SPEC: dict[str, Any] = {"size": [224, 224], "layout": "NCHW", "resize": "shorter_side", "resize_to": 256,
                                "crop": "center", "mean": [127, 127, 127], "std": [128, 128, 128], "dtype": "f32",
                                "color": "RGB"}


def host_call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
    """Accepts the logging builtin (the only capability the actor claims); anything else is a bug."""
    if namespace == "wasmcloud:builtin:logging":
        return b""
    raise HostCallError(f"unexpected host call {namespace} {operation}")


def new_instance(memory: int = MEMORY) -> WapcInstance:
    return compiled("preprocessor").instantiate(host_call, Limits(memory_bytes=memory))


def call(inst: WapcInstance, op: str, request: dict[str, Any]) -> dict[str, Any]:
    return msgpack.unpackb(inst.call(op, msgpack.packb(request, use_bin_type=True)), raw=False)


def decode(inst: WapcInstance, data: bytes) -> np.ndarray:
    """The actor's decode as an (h, w, 3) uint8 array; fails the test with the reason on an error."""
    reply = call(inst, DECODE, {"data": data})
    assert reply["result"] == {"success": None}, reply["result"]
    return np.frombuffer(reply["pixels"], np.uint8).reshape(reply["height"], reply["width"], 3)


def convert(inst: WapcInstance, data: bytes, spec: dict[str, Any] | None = None) -> np.ndarray:
    """The Convert tensor as a numpy array shaped by its dimensions."""
    request: dict[str, Any] = {"data": data}
    if spec is not None:
        request["spec"] = spec
    reply = call(inst, CONVERT, request)
    assert reply["result"] == {"success": None}, reply["result"]
    tensor = reply["tensor"]
    assert tensor["flags"] == 0
    dtype = {"ValueF32": np.float32, "ValueU8": np.uint8}[tensor["valueTypes"][0]]
    return np.frombuffer(tensor["data"], dtype).reshape(tensor["dimensions"])


def convert_error(inst: WapcInstance, data: bytes, spec: dict[str, Any] | None = None) -> str:
    """The invalidEncoding reason of a Convert that must fail."""
    request: dict[str, Any] = {"data": data}
    if spec is not None:
        request["spec"] = spec
    reply = call(inst, CONVERT, request)
    assert set(reply["result"]) == {"error"}, reply["result"]
    (variant, reason), = reply["result"]["error"].items()
    assert variant == "invalidEncoding"
    assert reply["tensor"]["data"] == b""
    return reason


def png_bytes(image: Image.Image, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **params)
    return buf.getvalue()


@functools.cache
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo (bundled with the package: no download)."""
    from skimage import data

    return getattr(data, name)()


def reference(image: Image.Image, spec: dict[str, Any] | None = None) -> np.ndarray:
    """Pillow/numpy reference of Convert: convert("RGB"), box-reduced as waft.models.decode does for any
    format but JPEG (whose draft() the caller applies), shorter side (or stretch) with Pillow's
    BILINEAR (or BICUBIC), centre crop with Python's round(), (x - mean) / std in f32, layout, colour."""
    s = {**DEFAULT_SPEC, **(spec or {})}
    gray = s["color"] in ("GRAY", "L")
    scale = 1 if image.format == "JPEG" else draft_scale(*image.size, s)  # a JPEG comes drafted already
    image = image.convert("L" if gray else "RGB")
    if scale > 1:
        image = image.reduce(scale)
    width, height = image.size
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[
        s.get("resample", "bilinear")]
    crop_h, crop_w = s["size"]
    if s["resize"] == "stretch":
        image = image.resize((crop_w, crop_h), resample)
    else:
        target = int(s["resize_to"])
        short = min(width, height)
        new = (target, int(target * height / width)) if width == short else (int(target * width / height), target)
        image = image.resize(new, resample)
        if s["crop"] == "center":
            left, top = round((new[0] - crop_w) / 2.0), round((new[1] - crop_h) / 2.0)
            image = image.crop((left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(image)
    if gray:
        pixels = pixels[..., None]
        s = {**s, "mean": s["mean"][:1], "std": s["std"][:1]}
    if s["color"] == "BGR":
        pixels = pixels[..., ::-1]
    if s["dtype"] == "f32":
        pixels = (pixels.astype(np.float32) - np.asarray(s["mean"], np.float32)) / np.asarray(s["std"], np.float32)
    if s["layout"] == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[None])
