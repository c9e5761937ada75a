"""The pre-processor's PNG decoder, run in wasm, against Pillow as the reference decoder.

PNG is lossless, so every case must match Pillow's `Image.open(...).convert("RGB")` bit for bit. The one
deliberate difference is 16-bit grey: Pillow opens it as "I;16" and its convert("RGB") clips every value
above 255 to white; the actor keeps the high byte, as Pillow itself does for 16-bit RGB, RGBA and LA.
"""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pngmaker import CHANNELS, SIGNATURE, chunk, encode
from pp_support import DECODE, call, convert_error, decode, new_instance, photo, png_bytes

from waft.host.wapc import WapcInstance

#: Every (colour type, bit depth) the PNG spec allows.
VALID = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
         (4, 8), (4, 16), (6, 8), (6, 16)]


@pytest.fixture(scope="module")
def inst() -> WapcInstance:
    """One instance for the module: errors must leave it usable, which the later tests then rely on."""
    return new_instance()


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def photo_samples(color_type: int, depth: int, h: int = 150, w: int = 211) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples at `depth` from scikit-image photos (chelsea for colour, camera for grey, a random alpha
    ramp), plus a palette for type 3."""
    rgb = photo("chelsea")[:h, :w].astype(np.uint32)
    grey = photo("camera")[:h, :w].astype(np.uint32)
    alpha = (np.add.outer(np.arange(h), np.arange(w)) * 7 % 256).astype(np.uint32)
    if color_type == 3:
        levels = 1 << depth
        pal_img = Image.fromarray(photo("chelsea")[:h, :w]).quantize(levels)
        idx = np.asarray(pal_img).astype(np.uint32)
        palette = np.asarray(pal_img.getpalette()[:3 * levels], np.uint8).reshape(-1, 3)
        return idx, palette

    def scale(v: np.ndarray) -> np.ndarray:  # 8-bit values to `depth` bits (16: spread, low byte varies)
        return v * 257 + (v % 7) if depth == 16 else v >> (8 - depth)

    planes = {0: [grey], 2: [rgb[..., 0], rgb[..., 1], rgb[..., 2]], 4: [grey, alpha],
              6: [rgb[..., 0], rgb[..., 1], rgb[..., 2], alpha]}[color_type]
    return np.stack([scale(p) for p in planes], axis=-1), None


def expected(data: bytes, color_type: int, depth: int, samples: np.ndarray) -> np.ndarray:
    if (color_type, depth) == (0, 16):
        grey = (samples[..., 0] >> 8).astype(np.uint8)  # high byte (see the module docstring)
        return np.repeat(grey[..., None], 3, axis=2)
    return pillow_rgb(data)


@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "adam7"])
@pytest.mark.parametrize(("color_type", "depth"), VALID, ids=[f"type{c}-{d}bit" for c, d in VALID])
def test_every_colour_type_and_depth_matches_pillow(inst: WapcInstance, color_type: int, depth: int,
                                                    interlace: bool) -> None:
    samples, palette = photo_samples(color_type, depth)
    data = encode(samples, color_type, depth, palette=palette, interlace=interlace)
    got = decode(inst, data)
    assert got.shape == (samples.shape[0], samples.shape[1], 3)
    np.testing.assert_array_equal(got, expected(data, color_type, depth, samples))


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (4, 3, 2, 1, 0)], ids=str)
@pytest.mark.parametrize(("color_type", "depth"), [(0, 1), (0, 4), (2, 8), (2, 16), (6, 16), (4, 8)])
def test_each_filter_on_random_pixels(inst: WapcInstance, color_type: int, depth: int,
                                      filters: tuple[int, ...]) -> None:
    rng = np.random.default_rng(depth * 10 + color_type)
    samples = rng.integers(0, 1 << depth, (37, 29, CHANNELS[color_type]))
    for interlace in (False, True):
        data = encode(samples, color_type, depth, filters=filters, interlace=interlace)
        np.testing.assert_array_equal(decode(inst, data), expected(data, color_type, depth, samples))


@pytest.mark.parametrize(("w", "h"), [(1, 1), (1, 9), (9, 1), (2, 3), (5, 5), (7, 13), (8, 8), (9, 17)])
def test_tiny_images_and_empty_adam7_passes(inst: WapcInstance, w: int, h: int) -> None:
    """Adam7 passes that are empty (images under 8 pixels on a side) have no rows in the stream."""
    rng = np.random.default_rng(w * 100 + h)
    for color_type, depth in [(0, 1), (0, 2), (3, 4), (2, 8), (6, 16)]:
        samples = rng.integers(0, 1 << depth, (h, w, CHANNELS[color_type]))
        palette = rng.integers(0, 256, (1 << depth, 3)) if color_type == 3 else None
        for interlace in (False, True):
            data = encode(samples, color_type, depth, palette=palette, interlace=interlace)
            np.testing.assert_array_equal(decode(inst, data), expected(data, color_type, depth, samples))


def test_pillow_written_modes(inst: WapcInstance) -> None:
    """PNGs as Pillow itself writes them, from photos: 1, L, LA, RGB, RGBA, P (+ transparency), I;16."""
    rgb = Image.fromarray(photo("chelsea"))
    grey = Image.fromarray(photo("camera"))
    alpha = Image.fromarray((np.arange(300 * 451) % 251).astype(np.uint8).reshape(300, 451))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    la = grey.resize((451, 300)).convert("LA")
    pal = rgb.quantize(200)
    cases = {
        "1": grey.convert("1"), "L": grey, "LA": la, "RGB": rgb, "RGBA": rgba, "P": pal,
        "P-optimised": rgb.quantize(12),
    }
    for name, image in cases.items():
        data = png_bytes(image, optimize=name.endswith("optimised"))
        np.testing.assert_array_equal(decode(inst, data), pillow_rgb(data), err_msg=name)
    for name, data in {"P+tRNS": png_bytes(pal, transparency=3), "L+tRNS": png_bytes(grey, transparency=0),
                       "RGB+tRNS": png_bytes(rgb, transparency=(1, 2, 3))}.items():
        assert b"tRNS" in data
        np.testing.assert_array_equal(decode(inst, data), pillow_rgb(data), err_msg=name)
    # Pillow's 16-bit grey: the actor keeps the high byte (Pillow's own convert("RGB") would clip).
    deep = (photo("camera").astype(np.uint16) * 257)
    data = png_bytes(Image.fromarray(deep))
    np.testing.assert_array_equal(decode(inst, data)[..., 0], (deep >> 8).astype(np.uint8))


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
def test_palette_with_trns_short_palette_and_out_of_range_indices(inst: WapcInstance) -> None:
    """Alpha from tRNS is dropped (convert("RGB")); indices past the PLTE entries are black, as in Pillow."""
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 16, (21, 19))
    palette = rng.integers(0, 256, (9, 3))
    for trns in (None, bytes(range(0, 250, 40)), bytes(9)):
        data = encode(idx, 3, 4, palette=palette, trns=trns)
        want = pillow_rgb(data)
        assert (want[idx >= 9] == 0).all()
        np.testing.assert_array_equal(decode(inst, data), want)


def test_many_idat_chunks_and_ancillary_chunks(inst: WapcInstance) -> None:
    samples, _ = photo_samples(2, 8)
    extras = [chunk(b"gAMA", struct.pack(">I", 45455)), chunk(b"tEXt", b"Comment\x00hello"),
              chunk(b"pHYs", bytes(9))]
    for split in (1, 7, 1000):
        data = encode(samples, 2, 8, idat_split=split, extra_chunks=extras)
        np.testing.assert_array_equal(decode(inst, data), pillow_rgb(data))


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_compression_levels_including_stored_blocks(inst: WapcInstance, level: int) -> None:
    samples, _ = photo_samples(6, 8)
    data = encode(samples, 6, 8, level=level)
    np.testing.assert_array_equal(decode(inst, data), pillow_rgb(data))


# --- malformed input: a clear invalidEncoding reason, never a trap, and the instance keeps working ---

def small_png() -> bytes:
    samples, _ = photo_samples(2, 8, 40, 50)
    return encode(samples, 2, 8)


def test_truncated_at_every_offset(inst: WapcInstance) -> None:
    data = small_png()
    for cut in range(len(data)):
        reason = convert_error(inst, data[:cut])
        if cut < 8 and data[:cut] != SIGNATURE[:cut]:
            assert reason == "unknown image format (expected JPEG, PNG, BMP, GIF or WebP)"
        elif cut < 8:
            assert reason in ("unknown image format (expected JPEG, PNG, BMP, GIF or WebP)", "truncated PNG data"), cut
        else:
            assert reason == "truncated PNG data", (cut, reason)
    assert decode(inst, data).shape == (40, 50, 3)


def test_bad_crc_names_the_chunk(inst: WapcInstance) -> None:
    data = bytearray(small_png())
    at = data.index(b"IDAT") + 4 + 10  # a byte inside the IDAT payload
    data[at] ^= 0x40
    assert convert_error(inst, bytes(data)) == "bad PNG CRC in IDAT chunk"
    data = bytearray(small_png())
    data[8 + 8 + 3] ^= 1  # IHDR width
    assert convert_error(inst, bytes(data)) == "bad PNG CRC in IHDR chunk"


def with_idat(payload: bytes, ihdr: bytes = struct.pack(">IIBBBBB", 4, 3, 8, 2, 0, 0, 0)) -> bytes:
    return SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", payload) + chunk(b"IEND", b"")


def test_bad_zlib_streams(inst: WapcInstance) -> None:
    raw = bytes(3 * (1 + 12))
    good = zlib.compress(raw)
    assert decode(inst, with_idat(good)).shape == (3, 4, 3)
    cases = {
        "bad PNG zlib data: incorrect header check": good[:1] + bytes([good[1] ^ 1]) + good[2:],
        "bad PNG zlib data: unknown compression method": b"\x79" + good[1:],
        "bad PNG zlib data: incorrect data check": good[:-1] + bytes([good[-1] ^ 0xFF]),
        "bad PNG zlib data: invalid block type": good[:2] + b"\x07" + good[3:],
        "bad PNG zlib data: unexpected end of compressed data": good[:-6],
        "truncated PNG image data": zlib.compress(raw[:-5]),
        "bad PNG filter type 7": zlib.compress(b"\x07" + raw[1:]),
        "too much PNG image data": zlib.compress(raw + bytes(2 << 20)),
    }
    for want, payload in cases.items():
        assert convert_error(inst, with_idat(payload)) == want
    # a few bytes of surplus image data are tolerated, as libpng does
    assert decode(inst, with_idat(zlib.compress(raw + bytes(10)))).shape == (3, 4, 3)


def test_invalid_headers(inst: WapcInstance) -> None:
    def ihdr(w: int = 4, h: int = 3, depth: int = 8, color: int = 2, comp: int = 0, filt: int = 0,
             inter: int = 0) -> bytes:
        return struct.pack(">IIBBBBB", w, h, depth, color, comp, filt, inter)

    ok = zlib.compress(bytes(3 * 13))
    assert convert_error(inst, with_idat(ok, ihdr(depth=4))) == "unsupported PNG bit depth 4 in colour type 2"
    assert convert_error(inst, with_idat(ok, ihdr(depth=16, color=3))) == \
        "unsupported PNG bit depth 16 in colour type 3"
    assert convert_error(inst, with_idat(ok, ihdr(color=5))) == "unsupported PNG colour type 5"
    assert convert_error(inst, with_idat(ok, ihdr(w=0))) == "bad PNG dimensions 0 x 3"
    assert convert_error(inst, with_idat(ok, ihdr(comp=1))) == "unknown PNG compression method"
    assert convert_error(inst, with_idat(ok, ihdr(filt=1))) == "unknown PNG filter method"
    assert convert_error(inst, with_idat(ok, ihdr(inter=2))) == "unknown PNG interlace method"
    assert convert_error(inst, with_idat(ok, ihdr(color=3))) == "missing PNG PLTE chunk"
    no_idat = SIGNATURE + chunk(b"IHDR", ihdr()) + chunk(b"IEND", b"")
    assert convert_error(inst, no_idat) == "missing PNG IDAT chunk"
    unknown = SIGNATURE + chunk(b"IHDR", ihdr()) + chunk(b"XXXX", b"") + chunk(b"IDAT", ok) + chunk(b"IEND", b"")
    assert convert_error(inst, unknown) == "unsupported critical PNG chunk XXXX"
    assert convert_error(inst, b"II*\0....") == "unknown image format (expected JPEG, PNG, BMP, GIF or WebP)"
    assert convert_error(inst, b"") == "unknown image format (expected JPEG, PNG, BMP, GIF or WebP)"


def test_huge_dimensions_are_refused_before_allocating(inst: WapcInstance) -> None:
    big = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    reason = convert_error(inst, with_idat(zlib.compress(b"\x00" * 100), big))
    assert reason == "image too large: 100000 x 100000 pixels exceeds the limit of 50000000 pixels"
    huge = struct.pack(">IIBBBBB", 0x7FFFFFFF, 0x7FFFFFFF, 16, 6, 0, 0, 0)
    assert "exceeds the limit of 50000000 pixels" in convert_error(inst, with_idat(b"", huge))
    # the spec can lower the limit; a raised limit meets the 2 GiB sanity check instead of a trap
    samples, _ = photo_samples(2, 8, 40, 50)
    data = encode(samples, 2, 8)
    assert convert_error(inst, data, {"max_pixels": 1999}) == \
        "image too large: 50 x 40 pixels exceeds the limit of 1999 pixels"
    reason = convert_error(inst, with_idat(b"", huge), {"max_pixels": 1 << 62})
    assert reason.startswith("image too large") or reason.startswith("out of memory"), reason
    # within the limit but more than the instance's memory: an error, not a trap
    wide = struct.pack(">IIBBBBB", 12_000, 4_000, 8, 2, 0, 0, 0)
    assert convert_error(inst, with_idat(zlib.compress(bytes(100)), wide)) in (
        "out of memory decoding a 12000 x 4000 image", "truncated PNG image data")


def test_input_size_limit(inst: WapcInstance) -> None:
    data = small_png() + bytes(20 * 1024 * 1024)
    assert convert_error(inst, data) == \
        f"image too large: {len(data)} bytes exceeds the limit of 20971520 bytes"


def test_random_bit_flips_never_trap(inst: WapcInstance) -> None:
    """Fixed-seed corruption of a real PNG: CRC catches almost all of it; to get past the CRC and reach
    the inflater and unfilterer, half of the corruptions also fix up the chunk CRCs."""
    rng = random.Random(1234)
    base = bytearray(small_png())
    for trial in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(8, len(data))] ^= 1 << rng.randrange(8)
        if trial % 2:
            data = bytearray(fix_crcs(bytes(data)))
        reply = call(inst, "MlPreprocessing.Convert", {"data": bytes(data)})
        result = reply["result"]
        if "error" in result:
            assert set(result["error"]) == {"invalidEncoding"} and result["error"]["invalidEncoding"]
        else:
            assert result == {"success": None}
    assert decode(inst, bytes(base)).shape == (40, 50, 3)


def fix_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC that is within the data (lengths may be corrupt: stop when lost)."""
    out = bytearray(data)
    pos = 8
    while pos + 12 <= len(out):
        (length,) = struct.unpack(">I", out[pos:pos + 4])
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end:end + 4] = struct.pack(">I", zlib.crc32(out[pos + 4:end]))
        pos = end + 4
    return bytes(out)


def test_decode_op_rejects_non_requests(inst: WapcInstance) -> None:
    from waft.host.wapc import GuestError

    with pytest.raises(GuestError):
        inst.call(DECODE, b"\xc1")
    with pytest.raises(GuestError):
        inst.call("MlPreprocessing.Convert", b"\x80")  # a map without data
    assert call(inst, "Actor.HealthRequest", {}) == {"healthy": True, "message": "ok"}
