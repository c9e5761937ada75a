"""MlPreprocessing.Convert end to end in wasm, against the Pillow/numpy reference pipeline.

For PNG input the actor must agree with Pillow decode + Pillow BILINEAR resize (shorter side to
`resize_to`) + centre crop + (x - mean) / std to within one 8-bit step (1/128 for the default spec);
in practice it matches exactly, because resize.c reproduces Pillow's fixed-point algorithm.
"""

from __future__ import annotations

import io
import itertools
from typing import Any

import msgpack
import numpy as np
import pytest
from PIL import Image
from pngmaker import encode
from pp_support import CONVERT, DEFAULT_SPEC, call, convert, convert_error, new_instance, photo, png_bytes, reference

from waft.host.wapc import GuestError, WapcInstance
from waft.interfaces.mlinference import Normalize, Tensor
from waft.models import IMAGENET_ZOO_SPEC, draft_scale, tf_lite_spec

EPS = 1e-6


@pytest.fixture(scope="module")
def inst() -> WapcInstance:
    return new_instance()


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return Image.fromarray(photo("chelsea"))


def assert_close(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert diff.max() <= tol, f"max abs diff {diff.max()} (mean {diff.mean()})"


def test_default_spec_matches_the_reference(inst: WapcInstance, chelsea: Image.Image) -> None:
    data = png_bytes(chelsea)
    want = reference(chelsea)
    assert want.shape == (1, 3, 224, 224)
    assert_close(convert(inst, data), want, 1 / 128 + EPS)  # no spec: the EfficientNet-Lite default
    assert_close(convert(inst, data, DEFAULT_SPEC), want, 1 / 128 + EPS)
    np.testing.assert_array_equal(convert(inst, data), want)  # what resize.c actually achieves


@pytest.mark.parametrize("variant", [
    {"layout": "NHWC"},
    {"dtype": "u8"},
    {"color": "BGR"},
    {"color": "BGR", "layout": "NHWC", "dtype": "u8"},
    {"mean": list(IMAGENET_ZOO_SPEC.mean), "std": list(IMAGENET_ZOO_SPEC.std)},
    {"mean": [0.485 * 255, 0.456 * 255, 0.406 * 255], "std": [0.229 * 255, 0.224 * 255, 0.225 * 255],
     "color": "BGR"},
    tf_lite_spec(240).to_json(),
    tf_lite_spec(260).to_json(),
    {"size": [200, 150], "resize_to": 233},
    {"size": [97, 97], "resize_to": 97},
    {"size": [224, 224], "resize_to": 225},   # odd margins: offsets rounded half to even
    {"resize": "stretch", "size": [224, 224]},
    {"resize": "stretch", "size": [500, 700]},  # enlarging: plain bilinear
    {"resize": "stretch", "size": [150, 900]},  # reduce one axis, enlarge the other
    {"crop": "none", "resize_to": 180},
    {"resample": "bicubic"},
    {"resample": "bicubic", "resize": "stretch", "size": [640, 333]},
], ids=lambda v: ",".join(f"{k}={v[k]}" for k in sorted(v)))
def test_spec_variants(inst: WapcInstance, chelsea: Image.Image, variant: dict[str, Any]) -> None:
    data = png_bytes(chelsea)
    spec = {**DEFAULT_SPEC, **variant}
    want = reference(chelsea, spec)
    got = convert(inst, data, spec)
    step = 1.0 if spec["dtype"] == "u8" else 1 / min(spec["std"])
    assert_close(got, want, step + EPS)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("variant", [
    {},
    {"layout": "NHWC"},
    {"color": "BGR", "layout": "NHWC"},
    {"mean": list(IMAGENET_ZOO_SPEC.mean), "std": list(IMAGENET_ZOO_SPEC.std)},
    {"mean": [0.485 * 255, 0.456 * 255, 0.406 * 255], "std": [0.229 * 255, 0.224 * 255, 0.225 * 255],
     "color": "BGR"},
    {"size": [200, 150], "resize_to": 233, "mean": [1e-3, -7.25, 300.0], "std": [3.0e-5, 1.0, -0.37]},
], ids=lambda v: ",".join(f"{k}={v[k]}" for k in sorted(v)) or "default")
@pytest.mark.parametrize("grey", [False, True], ids=["rgb", "grey"])
def test_deferred_normalisation_is_bit_exact(inst: WapcInstance, chelsea: Image.Image, variant: dict[str, Any],
                                             grey: bool) -> None:
    """What Waft's own API actor asks for: u8 pixels plus the normalisation, which the provider applies
    (`Normalize.apply`). Every element must equal the f32 tensor the pre-processor would have answered and
    the Pillow reference: the same f32 operations in the same order."""
    image = chelsea.convert("L") if grey else chelsea
    data = png_bytes(image)
    spec = {**DEFAULT_SPEC, **variant}
    f32 = convert(inst, data, spec)
    answer = call(inst, CONVERT, {"data": data, "spec": spec, "defer_normalize": True})
    assert answer["result"] == {"success": None}
    tensor = Tensor.from_wire(answer["tensor"])
    assert tensor.value_types == ["ValueU8"] and tensor.dimensions == list(f32.shape)
    normalize = Normalize.from_wire(answer["normalize"])
    assert normalize.axis == (3 if spec["layout"] == "NHWC" else 1)
    got = normalize.apply(tensor.to_numpy())
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), f32.view(np.uint32))
    np.testing.assert_array_equal(got, reference(image, spec))


@pytest.mark.parametrize("variant", [
    {"color": "GRAY", "dtype": "u8", "resize": "stretch", "size": [28, 28], "layout": "NHWC"},
    {"color": "GRAY", "dtype": "u8", "resize": "stretch", "size": [28, 28], "layout": "NCHW"},
    {"color": "GRAY"},
    {"color": "L", "layout": "NHWC", "mean": [100.5, 0, 0], "std": [3.25, 1, 1]},
], ids=lambda v: ",".join(f"{k}={v[k]}" for k in sorted(v)))
@pytest.mark.parametrize("source", ["rgb", "grey"])
def test_gray_specs_follow_pillow_convert_l(inst: WapcInstance, chelsea: Image.Image, variant: dict[str, Any],
                                            source: str) -> None:
    """One channel, as Pillow's convert("L") then resize: what a digit classifier or any C=1 model takes."""
    image = chelsea.convert("L") if source == "grey" else chelsea
    spec = {**DEFAULT_SPEC, **variant}
    got = convert(inst, png_bytes(image), spec)
    want = reference(image, spec)
    assert got.shape == want.shape and (1 in got.shape[1:2] or got.shape[-1] == 1)
    np.testing.assert_array_equal(got, want)
    if spec["dtype"] == "f32":  # and deferred, as the API asks for it
        answer = call(inst, CONVERT, {"data": png_bytes(image), "spec": spec, "defer_normalize": True})
        normalize = Normalize.from_wire(answer["normalize"])
        assert len(normalize.mean) == 1
        np.testing.assert_array_equal(normalize.apply(Tensor.from_wire(answer["tensor"]).to_numpy()), want)


def test_an_extreme_aspect_ratio_is_refused_before_resampling(inst: WapcInstance) -> None:
    """1 x 40 000 pixels is a small image, but shorter side to 256 would make the long side 10 million pixels
    (the conversion to an integer side was unchecked): refused as bad input, the actor unharmed."""
    reason = convert_error(inst, png_bytes(Image.new("L", (1, 40_000), 128)))
    assert "image too large" in reason and "exceeds the limit of 1048576" in reason
    stretched = convert(inst, png_bytes(Image.new("L", (1, 40_000), 128)), {**DEFAULT_SPEC, "resize": "stretch"})
    assert stretched.shape == (1, 3, 224, 224)  # a stretch has no such side


def test_a_u8_spec_is_not_deferred(inst: WapcInstance, chelsea: Image.Image) -> None:
    """Nothing to defer: the tensor is already what the model takes, and no normalisation comes back."""
    data = png_bytes(chelsea)
    spec = {**DEFAULT_SPEC, "dtype": "u8"}
    answer = call(inst, CONVERT, {"data": data, "spec": spec, "defer_normalize": True})
    assert "normalize" not in answer
    np.testing.assert_array_equal(Tensor.from_wire(answer["tensor"]).to_numpy(), convert(inst, data, spec))
    assert "normalize" not in call(inst, CONVERT, {"data": data, "spec": DEFAULT_SPEC, "defer_normalize": False})


@pytest.mark.parametrize("image_name", ["portrait", "grey", "square", "thin"])
def test_image_shapes(inst: WapcInstance, chelsea: Image.Image, image_name: str) -> None:
    image = {
        "portrait": chelsea.transpose(Image.Transpose.ROTATE_90),
        "grey": Image.fromarray(photo("camera")),          # L: replicated to 3 channels
        "square": chelsea.crop((0, 0, 300, 300)),
        "thin": chelsea.resize((451, 40)),                  # the long side grows a lot
    }[image_name]
    data = png_bytes(image)
    for spec in (DEFAULT_SPEC, {**DEFAULT_SPEC, "layout": "NHWC", "dtype": "u8"}):
        np.testing.assert_array_equal(convert(inst, data, spec), reference(image, spec))


def test_resize_matches_pillow_bilinear_on_many_sizes(inst: WapcInstance) -> None:
    """resize.c (stretch, no crop, u8 NHWC) against Pillow's BILINEAR on the same 8-bit image, after
    Pillow's reduce() where the target is 2x or more smaller: the contract allows 1 (rounding); it is exact."""
    rng = np.random.default_rng(3)
    src = Image.fromarray(photo("astronaut")[::2, ::2])  # 256 x 256 photo
    noise = Image.fromarray(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8))
    # includes sizes where Pillow 13 runs the vertical pass first (height shrinks > 2x more than width)
    sizes = [(1, 1), (1, 200), (200, 1), (7, 5), (64, 64), (100, 37), (255, 256), (256, 255), (257, 300),
             (31, 500), (512, 512), (3, 3), (250, 20), (300, 50), (83, 2), (90, 60), (60, 90)]
    for image, (w, h), resample in itertools.product((src, noise), sizes, ("bilinear", "bicubic")):
        spec = {**DEFAULT_SPEC, "resize": "stretch", "size": [h, w], "dtype": "u8", "layout": "NHWC",
                "resample": resample}
        got = convert(inst, png_bytes(image), spec)[0]
        pil_filter = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[resample]
        scale = draft_scale(*image.size, spec)  # small targets: box-reduced first, as Pillow's reduce()
        want = np.asarray((image.reduce(scale) if scale > 1 else image).resize((w, h), pil_filter))
        assert_close(got, want, 1)
        np.testing.assert_array_equal(got, want, err_msg=f"{image.size} -> {(w, h)} {resample}")


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("color", ["RGB", "L"])
def test_non_jpeg_sources_are_box_reduced_as_pillows_reduce(inst: WapcInstance, scale: int, color: str) -> None:
    """A PNG 2x or more larger than the target is box-reduced first (as a JPEG is scaled in its IDCT), to
    Pillow's reduce() exactly, including the narrower last row and column whose boxes of 3, 5, 6 or 7
    pixels use Pillow's rounded fixed-point division: a target of exactly the reduced size shows the
    reduced pixels themselves."""
    rng = np.random.default_rng(scale)
    for w, h in [(1001, 803), (37, 29), (517, 11)]:
        if -(-min(w, h) // scale) < 1 or min(w, h) < scale:
            continue
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(color)
        size = [-(-h // scale), -(-w // scale)]
        spec = {**DEFAULT_SPEC, "resize": "stretch", "size": size, "dtype": "u8", "layout": "NHWC",
                "color": "GRAY" if color == "L" else "RGB", "mean": [0.0] * 3, "std": [1.0] * 3}
        got = convert(inst, png_bytes(image), spec)[0]
        want = np.asarray(image.reduce(scale))
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"{(w, h)} / {scale}")


def test_png_colour_types_through_convert(inst: WapcInstance, chelsea: Image.Image) -> None:
    """Decoding feeds the resize exactly, whatever the PNG flavour (interlaced palette, 16-bit RGBA)."""
    arr = np.asarray(chelsea).astype(np.uint32)
    alpha = np.full((*arr.shape[:2], 1), 200, np.uint32)
    deep = np.concatenate([arr * 257, alpha * 257], axis=2)
    data = encode(deep, 6, 16, interlace=True)
    np.testing.assert_array_equal(convert(inst, data), reference(chelsea))
    pal = chelsea.quantize(64)
    np.testing.assert_array_equal(convert(inst, png_bytes(pal)), reference(pal))


def test_request_forms(inst: WapcInstance, chelsea: Image.Image) -> None:
    data = png_bytes(chelsea)
    want = reference(chelsea)
    # bytes as msgpack str (wasmCloud's OTP host), spec: null, unknown keys in request and spec
    raw = msgpack.packb({"data": data, "spec": None, "extra": [1, 2]}, use_bin_type=False)
    reply = msgpack.unpackb(inst.call(CONVERT, raw), raw=False)
    got = np.frombuffer(reply["tensor"]["data"], np.float32).reshape(reply["tensor"]["dimensions"])
    np.testing.assert_array_equal(got, want)
    spec = {**DEFAULT_SPEC, "future_field": {"x": 1}, "resample": "bilinear", "mean": [127, 127.0, 127]}
    np.testing.assert_array_equal(convert(inst, data, spec), want)
    reply = call(inst, CONVERT, {"data": data})
    assert list(reply) == ["result", "tensor"]
    assert reply["tensor"]["valueTypes"] == ["ValueF32"] and reply["tensor"]["dimensions"] == [1, 3, 224, 224]
    assert len(reply["tensor"]["data"]) == 602112


@pytest.mark.parametrize(("spec", "reason"), [
    ({"layout": "CHW"}, "bad input spec: layout must be NCHW or NHWC"),
    ({"dtype": "f16"}, "bad input spec: dtype must be f32 or u8"),
    ({"color": "RGBA"}, "bad input spec: color must be RGB or BGR"),
    ({"resample": "lanczos"}, "bad input spec: resample must be bilinear or bicubic"),
    ({"std": [1, 0, 1]}, "bad input spec: std must be non-zero and mean and std finite"),
    ({"mean": [1, 2]}, "bad input spec: mean and std need 3 values"),
    ({"size": [224]}, "bad input spec: size must be [height, width]"),
    ({"size": [0, 224]}, "bad input spec: size must be between 1 and 16384 on each side"),
    ({"resize_to": 100}, "bad input spec: resize_to is smaller than the crop size"),
    ({"size": "big"}, None),
])
def test_bad_specs_are_status_errors(inst: WapcInstance, chelsea: Image.Image, spec: dict[str, Any],
                                     reason: str | None) -> None:
    got = convert_error(inst, png_bytes(chelsea.crop((0, 0, 40, 30))), {**DEFAULT_SPEC, **spec})
    if reason is None:
        assert got.startswith("bad input spec: ")
    else:
        assert got == reason
    assert convert(inst, png_bytes(chelsea)).shape == (1, 3, 224, 224)  # still serving


def test_not_a_request_is_a_guest_error(inst: WapcInstance) -> None:
    for payload in (b"", b"\x91\x01", msgpack.packb({"spec": {}}), msgpack.packb({"data": 5})):
        with pytest.raises(GuestError, match="bad ConversionRequest"):
            inst.call(CONVERT, payload)
    assert call(inst, "Actor.HealthRequest", {}) == {"healthy": True, "message": "ok"}


def test_repeated_calls_keep_memory_flat() -> None:
    """Buffers are allocated once per call at final size and freed: a small cap survives many calls."""
    inst = new_instance(memory=48 << 20)
    data = png_bytes(Image.fromarray(photo("chelsea")))
    first = convert(inst, data)
    for _ in range(40):
        np.testing.assert_array_equal(convert(inst, data), first)
        convert_error(inst, data[:-20])


def jpeg_built(inst: WapcInstance) -> bool:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    reply = call(inst, CONVERT, {"data": buf.getvalue()})
    return "JPEG support is not built" not in str(reply["result"])


def test_jpeg_through_convert(inst: WapcInstance, chelsea: Image.Image) -> None:
    """JPEG decoding is jpeg.c's (tests/preprocessor/test_jpeg.py); here: the Convert plumbing and the DCT
    scale choice. A 12 MP JPEG decodes at 1/8 scale, then resizes the rest of the way; against Pillow's
    full-size decode + resize the difference stays small."""
    if not jpeg_built(inst):
        pytest.skip("jpeg.c has not landed: the actor is built PNG-only")
    buf = io.BytesIO()
    chelsea.save(buf, "JPEG", quality=95)
    small = Image.open(io.BytesIO(buf.getvalue()))
    assert_close(convert(inst, buf.getvalue()), reference(small), 2 / 128 + EPS)
    big = chelsea.resize((4000, 3000), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    decoded = Image.open(io.BytesIO(buf.getvalue()))
    got, want = convert(inst, buf.getvalue()), reference(decoded)
    diff = np.abs(got - want) * 128
    assert diff.mean() < 1.5 and diff.max() < 24, (diff.mean(), diff.max())
    assert convert_error(inst, buf.getvalue()[:5000]).startswith(("truncated", "corrupt"))
