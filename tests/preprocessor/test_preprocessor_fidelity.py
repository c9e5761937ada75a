"""Fidelity of MlPreprocessing.Convert on real photos (issue 6): the actor against `waft.models.preprocess`.

Five scikit-image photos (chelsea, coffee, astronaut, rocket, camera; bundled, no download) in 48 encodings:
JPEG baseline and progressive at 4:2:0 and 4:4:4, grayscale and Adobe CMYK, plus a 4x-upscaled chelsea; PNG
8-bit, 16-bit, palette and Adam7-interlaced (RGB, or grey for camera). Each goes through the pre-processor
actor (waPC binding) with effnetlite0's input spec and through the reference (Pillow decode + numpy), and:

- decoded pixels (MlPreprocessing.Decode, full size): PNG exact, JPEG within +-2 per sample (measured: 0);
- the final tensors: mean abs diff <= 0.01 (normalised units; measured 0 with a libjpeg-turbo Pillow);
- onnxruntime on build/models/effnetlite0: the same top-1 class for the actor's tensor and the reference's.

Where the actor decodes a JPEG at a DCT scale (`draft_denom` in preprocessor.c: the largest of 8, 4, 2 whose
scaled shorter side still covers `resize_to`), the reference decodes at the same scale with Pillow's
`Image.draft`; a PNG that large is box-reduced by the same scale on both sides (`Image.reduce`).
One documented deviation on the reference side: Pillow opens 16-bit grey PNGs as "I;16" and its
convert("RGB") clips to white; the actor keeps the high byte (as Pillow does for 16-bit RGB), so the
reference takes the high byte too (tests/preprocessor/test_png.py).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pngmaker import encode
from pp_support import convert, decode, new_instance, photo, png_bytes

from waft.host.wapc import WapcInstance
from waft.models import decode as decode_for_actor
from waft.models import draft_scale, preprocess

MODEL_DIR = Path(__file__).resolve().parents[2] / "build" / "models" / "effnetlite0"
COLOUR = ("chelsea", "coffee", "astronaut", "rocket")
JPEG_TOLERANCE = 2
TENSOR_MEAN_TOLERANCE = 0.01


def _jpeg(image: Image.Image, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **params)
    return buf.getvalue()


def _rgb(name: str) -> Image.Image:
    return Image.fromarray(photo(name)).convert("RGB")


def _deep(samples: np.ndarray) -> np.ndarray:
    """8-bit samples spread to 16 bits with a varying low byte (the high byte is the 8-bit value)."""
    v = samples.astype(np.uint32)
    return (v * 257 + v % 7).astype(np.uint16)


def _cases() -> dict[str, Callable[[], bytes]]:
    cases: dict[str, Callable[[], bytes]] = {}
    for name in COLOUR:
        for progressive in (False, True):
            kind = "progressive" if progressive else "baseline"
            cases[f"{name}-jpeg-{kind}-420"] = (
                lambda n=name, p=progressive: _jpeg(_rgb(n), quality=90, subsampling=2, progressive=p))
            cases[f"{name}-jpeg-{kind}-444"] = (
                lambda n=name, p=progressive: _jpeg(_rgb(n), quality=90, subsampling=0, progressive=p))
        cases[f"{name}-jpeg-grayscale"] = lambda n=name: _jpeg(_rgb(n).convert("L"), quality=90)
        cases[f"{name}-jpeg-cmyk"] = lambda n=name: _jpeg(_rgb(n).convert("CMYK"), quality=90)
        cases[f"{name}-png-8bit"] = lambda n=name: png_bytes(_rgb(n))
        cases[f"{name}-png-16bit"] = lambda n=name: encode(_deep(photo(n)), 2, 16)
        cases[f"{name}-png-palette"] = lambda n=name: png_bytes(_rgb(n).quantize(256))
        cases[f"{name}-png-interlaced"] = lambda n=name: encode(photo(n), 2, 8, interlace=True)
    for progressive in (False, True):
        kind = "progressive" if progressive else "baseline"
        cases[f"camera-jpeg-{kind}-grey"] = (
            lambda p=progressive: _jpeg(Image.fromarray(photo("camera")), quality=90, progressive=p))
    cases["camera-jpeg-cmyk"] = lambda: _jpeg(Image.fromarray(photo("camera")).convert("CMYK"), quality=90)
    cases["camera-png-8bit"] = lambda: png_bytes(Image.fromarray(photo("camera")))
    cases["camera-png-16bit"] = lambda: encode(_deep(photo("camera")), 0, 16)
    cases["camera-png-interlaced"] = lambda: encode(photo("camera"), 0, 8, interlace=True)
    # A 12 MP-class input: the actor decodes it at 1/4 DCT scale, the reference with draft at 1/4.
    cases["chelsea-x4-jpeg-baseline-420"] = lambda: _jpeg(
        _rgb("chelsea").resize((451 * 4, 300 * 4), Image.Resampling.BICUBIC), quality=90)
    cases["coffee-x2-jpeg-progressive-444"] = lambda: _jpeg(
        _rgb("coffee").resize((1200, 800), Image.Resampling.BICUBIC), quality=90, subsampling=0, progressive=True)
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    meta = json.loads((MODEL_DIR / "metadata.json").read_text())
    return meta["input_spec"]


@pytest.fixture(scope="module")
def session() -> Any:
    ort = pytest.importorskip("onnxruntime")
    model = next(MODEL_DIR.glob("*.onnx"), None)
    if model is None:
        pytest.skip("build/models/effnetlite0 is not built (make models)")
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def inst() -> WapcInstance:
    return new_instance()


def reference_image(data: bytes, spec: dict[str, Any]) -> tuple[Image.Image, int]:
    """The reference's image before the resize (waft.models.decode: a JPEG at the DCT scale, any other
    format box-reduced by the same scale) and that scale."""
    image = Image.open(io.BytesIO(data))
    scale = draft_scale(*image.size, spec)
    if image.mode == "I;16":  # the documented deviation: keep the high byte, as the actor does
        image.load()
        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))
    return decode_for_actor(image, spec), scale


def full_reference_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode == "I;16":
        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))
    return np.asarray(image.convert("RGB"))


def top1(session: Any, tensor: np.ndarray) -> int:
    logits = session.run(None, {session.get_inputs()[0].name: tensor.astype(np.float32)})[0]
    return int(np.argmax(logits))


def test_there_are_at_least_40_encodings() -> None:
    assert len(CASES) >= 40
    kinds = {name.split("-", 1)[1] for name in CASES}
    for needed in ("jpeg-baseline-420", "jpeg-progressive-444", "jpeg-grayscale", "jpeg-cmyk", "png-16bit",
                   "png-palette", "png-interlaced"):
        assert needed in kinds


@pytest.mark.parametrize("case", sorted(CASES))
def test_actor_matches_the_reference(inst: WapcInstance, session: Any, spec: dict[str, Any], case: str) -> None:
    data = CASES[case]()
    is_png = data.startswith(b"\x89PNG")

    # 1. decoded pixels, full size
    ours = decode(inst, data)
    want = full_reference_pixels(data)
    assert ours.shape == want.shape
    diff = np.abs(ours.astype(np.int16) - want.astype(np.int16))
    if is_png:
        assert diff.max() == 0, f"PNG decode differs: max {diff.max()}, mean {diff.mean():.4f}"
    else:
        assert diff.max() <= JPEG_TOLERANCE, f"JPEG decode: max {diff.max()}, mean {diff.mean():.4f}"

    # 2. the tensor, against waft.models.preprocess on the reference decode (same DCT scale)
    image, scale = reference_image(data, spec)
    if case.startswith("chelsea-x4"):
        assert scale == 4  # the case exists to exercise a reduced-size IDCT
    got = convert(inst, data, spec)
    ref = preprocess(image, spec)
    assert got.shape == ref.shape == (1, 3, 224, 224) and got.dtype == ref.dtype == np.float32
    mean_diff = float(np.abs(got.astype(np.float64) - ref).mean())
    assert mean_diff <= TENSOR_MEAN_TOLERANCE, f"tensor mean abs diff {mean_diff:.5f} (DCT scale 1/{scale})"

    # 3. the model's answer
    assert top1(session, got) == top1(session, ref)
