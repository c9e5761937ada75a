"""The pre-processor's JPEG decoder (actors/preprocessor/jpeg.c), run in wasm through the jpegcheck
test actor, against Pillow (libjpeg-turbo) as the reference decoder.

jpeg.c reimplements libjpeg-turbo's accurate integer IDCT (full and reduced sizes), its "fancy" chroma
upsampling and its YCbCr tables, so with a libjpeg-turbo Pillow every case below matches bit for bit
(measured: max abs diff 0 for all photos, qualities, subsamplings, progressive, CMYK, restart markers,
orientations and 1/2, 1/4, 1/8 scales). The assertions use the brief's tolerances (mean <= 1.5,
max <= 16 at full scale; looser for scaled decodes) so that a Pillow built on another libjpeg still
passes; `test_bit_exact_with_libjpeg_turbo` pins exactness where the reference is libjpeg-turbo.

Pillow cannot write 4:4:0, 4:1:1, odd sampling mixes, multi-scan sequential files, YCCK, 16-bit
quantization tables or long Huffman codes, so a small baseline encoder below (`encode_baseline`) makes
those, and Pillow is still the decoder we compare with.
"""

from __future__ import annotations

import io
import math
import random
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from PIL import Image, ImageOps, features

ACTORS_TESTS = Path(__file__).resolve().parents[1] / "actors"
if str(ACTORS_TESTS) not in sys.path:
    sys.path.insert(0, str(ACTORS_TESTS))

from actor_support import compiled  # noqa: E402

from waft.host.wapc import ActorTrap, GuestError, Limits, WapcInstance  # noqa: E402

TURBO = bool(features.check_feature("libjpeg_turbo"))


# ---- the actor ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inst() -> WapcInstance:
    """One instance for the module: failed decodes must leave it usable, which later tests rely on."""
    return compiled("jpegcheck").instantiate(lambda *_: b"", Limits(memory_bytes=256 << 20, deadline_ms=30_000))


def decode(inst: WapcInstance, data: bytes, scale: int = 1, **extra: Any) -> np.ndarray:
    """(h, w, channels) uint8 from the actor; GuestError carries the decoder's reason."""
    reply = msgpack.unpackb(inst.call("Jpeg.Decode", msgpack.packb({"data": data, "scale": scale, **extra})))
    return np.frombuffer(reply["pixels"], np.uint8).reshape(reply["height"], reply["width"], reply["channels"])


def decode_error(inst: WapcInstance, data: bytes, scale: int = 1, **extra: Any) -> str:
    with pytest.raises(GuestError) as info:
        decode(inst, data, scale, **extra)
    return str(info.value)


def info(inst: WapcInstance, data: bytes) -> dict[str, int]:
    return msgpack.unpackb(inst.call("Jpeg.Info", msgpack.packb({"data": data})))


# ---- the reference --------------------------------------------------------------------------------


def pillow_scale(size: tuple[int, int], scale: int) -> int:
    """The DCT scale Pillow's draft() picks when asked for (w // scale, h // scale)."""
    want = min(size[0] // max(1, size[0] // scale), size[1] // max(1, size[1] // scale))
    return next(a for a in (8, 4, 2, 1) if want >= a)


def reference(data: bytes, scale: int = 1) -> np.ndarray:
    """Pillow's decode: draft() for DCT scaling, then exif_transpose and convert("RGB")."""
    image = Image.open(io.BytesIO(data))
    if scale > 1:
        assert pillow_scale(image.size, scale) == scale
        image.draft("RGB", (image.size[0] // scale, image.size[1] // scale))
    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def compare(ours: np.ndarray, data: bytes, scale: int = 1) -> tuple[float, int]:
    """Mean and max abs difference against Pillow, over RGB (grey output is replicated, as Convert does)."""
    ref = reference(data, scale)
    rgb = np.repeat(ours, 3, axis=2) if ours.shape[2] == 1 else ours
    assert rgb.shape == ref.shape
    diff = np.abs(rgb.astype(np.int16) - ref.astype(np.int16))
    return float(diff.mean()), int(diff.max())


def assert_close(ours: np.ndarray, data: bytes, scale: int = 1) -> None:
    mean, worst = compare(ours, data, scale)
    if scale == 1:
        assert mean <= 1.5 and worst <= 16, (mean, worst)
    else:  # another libjpeg may pick other reduced IDCTs/upsamplers at reduced sizes
        assert mean <= 3.0 and worst <= 48, (mean, worst)


def jpeg(image: Image.Image, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **params)
    return buf.getvalue()


def photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


# ---- a minimal baseline encoder, for what Pillow cannot write ----------------------------------------

#: Zigzag position -> natural index.
ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7,
          14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46,
          53, 60, 61, 54, 47, 55, 62, 63]
#: T.81 Annex K luminance table, in natural order.
STD_Q = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                  14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
_C = np.array([[(math.sqrt(0.5) if u == 0 else 1.0) / 2 * math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)]
               for u in range(8)])


def _huffman(symbols: list[int], lengths: list[int]) -> tuple[bytes, dict[int, tuple[int, int]]]:
    """DHT payload (without class/id byte) and {symbol: (code, length)} for canonical codes."""
    counts = [lengths.count(n) for n in range(1, 17)]
    order = sorted(range(len(symbols)), key=lambda i: lengths[i])
    codes, code, prev = {}, 0, 1
    for i in order:
        code <<= lengths[i] - prev
        prev = lengths[i]
        codes[symbols[i]] = (code, lengths[i])
        code += 1
    return bytes(counts) + bytes(symbols[i] for i in order), codes


# Deliberately uneven code lengths, up to 16 bits, so the decoder's slow (> 9-bit) path is exercised.
_DC_SYMS = list(range(12))
_DC = _huffman(_DC_SYMS, [3] * 4 + [5] * 8)
_AC_SYMS = [0x00, 0xF0] + [r << 4 | s for r in range(16) for s in range(1, 11)]
_AC = _huffman(_AC_SYMS, [6] * 30 + [10] * 60 + [16] * 72)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _category(v: int) -> int:
    return abs(v).bit_length()


def _bits(v: int, n: int) -> int:
    return v if v >= 0 else v + (1 << n) - 1


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value: int, n: int) -> None:
        self.acc = (self.acc << n) | (value & ((1 << n) - 1))
        self.n += n
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0)  # byte stuffing
        self.acc &= (1 << self.n) - 1

    def align(self) -> None:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1-bits


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def encode_baseline(planes: list[np.ndarray], sampling: list[tuple[int, int]], size: tuple[int, int], *,
                    ids: tuple[int, ...] | None = None, app: bytes = b"", quality_scale: float = 0.5,
                    qtable16: bool = False, restart: int = 0, separate_scans: bool = False) -> bytes:
    """Baseline JPEG of the given component planes (each already at its own sampled size) with any
    sampling factors, one interleaved scan (or one scan per component), optional DRI and 16-bit DQT."""
    width, height = size
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    ids = ids or tuple(range(1, len(planes) + 1))
    q = np.clip(np.round(STD_Q * quality_scale), 1, 255).astype(int)
    mcux, mcuy = -(-width // (8 * hmax)), -(-height // (8 * vmax))
    blocks = []
    for plane, (h, v) in zip(planes, sampling, strict=True):
        cw, ch = -(-width * h // hmax), -(-height * v // vmax)
        assert plane.shape == (ch, cw), (plane.shape, ch, cw)
        padded = np.pad(plane.astype(np.float64), ((0, mcuy * v * 8 - ch), (0, mcux * h * 8 - cw)), mode="edge")
        tiles = (padded - 128).reshape(mcuy * v, 8, mcux * h, 8).transpose(0, 2, 1, 3)
        coefs = np.einsum("ux,abxy,vy->abuv", _C, tiles, _C)
        blocks.append(np.round(coefs / q).astype(int))
    out = bytearray(b"\xff\xd8") + app
    if qtable16:
        out += _segment(0xDB, bytes([0x10]) + b"".join(struct.pack(">H", int(q.flat[z])) for z in ZIGZAG))
    else:
        out += _segment(0xDB, bytes([0x00]) + bytes(int(q.flat[z]) for z in ZIGZAG))
    sof = struct.pack(">BHHB", 8, height, width, len(planes))
    for cid, (h, v) in zip(ids, sampling, strict=True):
        sof += bytes([cid, h << 4 | v, 0])
    out += _segment(0xC0, sof)
    out += _segment(0xC4, b"\x00" + _DC[0]) + _segment(0xC4, b"\x10" + _AC[0])
    if restart:
        out += _segment(0xDD, struct.pack(">H", restart))
    scans = [[i] for i in range(len(planes))] if separate_scans else [list(range(len(planes)))]
    for scan in scans:
        out += _segment(0xDA, bytes([len(scan)]) + b"".join(bytes([ids[i], 0x00]) for i in scan) + b"\x00\x3f\x00")
        bw = _BitWriter()
        pred = [0] * len(planes)
        if len(scan) == 1:  # non-interleaved: ceil(component size / 8) blocks, one per MCU
            i = scan[0]
            h, v = sampling[i]
            nbw, nbh = ceil_div(ceil_div(width * h, hmax), 8), ceil_div(ceil_div(height * v, vmax), 8)
            units = [[(i, by, bx)] for by in range(nbh) for bx in range(nbw)]
        else:
            units = [[(i, my * sampling[i][1] + y, mx * sampling[i][0] + x) for i in scan
                      for y in range(sampling[i][1]) for x in range(sampling[i][0])]
                     for my in range(mcuy) for mx in range(mcux)]
        for n, unit in enumerate(units):
            if restart and n and n % restart == 0:
                bw.align()
                bw.out += bytes([0xFF, 0xD0 + (n // restart - 1) % 8])
                pred = [0] * len(planes)
            for i, by, bx in unit:
                zz = [int(blocks[i][by, bx].flat[z]) for z in ZIGZAG]
                diff = zz[0] - pred[i]
                pred[i] = zz[0]
                s = _category(diff)
                bw.put(*_DC[1][s])
                if s:
                    bw.put(_bits(diff, s), s)
                run = 0
                last = max((k for k in range(1, 64) if zz[k]), default=0)
                for k in range(1, last + 1):
                    if zz[k] == 0:
                        run += 1
                        continue
                    while run > 15:
                        bw.put(*_AC[1][0xF0])
                        run -= 16
                    s = _category(zz[k])
                    bw.put(*_AC[1][run << 4 | s])
                    bw.put(_bits(zz[k], s), s)
                    run = 0
                if last < 63:
                    bw.put(*_AC[1][0x00])
        bw.align()
        out += bw.out
    return bytes(out + b"\xff\xd9")


def subsample(plane: np.ndarray, fx: int, fy: int) -> np.ndarray:
    """Box-average by (fx, fy), keeping the ceil size (edge blocks average what they have)."""
    h, w = plane.shape
    ch, cw = -(-h // fy), -(-w // fx)
    padded = np.pad(plane.astype(np.float64), ((0, ch * fy - h), (0, cw * fx - w)), mode="edge")
    return np.round(padded.reshape(ch, fy, cw, fx).mean(axis=(1, 3))).astype(np.uint8)


def ycbcr_planes(rgb: np.ndarray) -> list[np.ndarray]:
    ycc = np.asarray(Image.fromarray(rgb).convert("YCbCr"))
    return [ycc[..., i] for i in range(3)]


def crafted(sampling: list[tuple[int, int]], size: tuple[int, int] = (123, 85), **kw: Any) -> bytes:
    """A JFIF YCbCr photo crop encoded with `sampling`."""
    width, height = size
    planes = ycbcr_planes(photo("astronaut")[100:100 + height, 150:150 + width])
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    planes = [subsample(p, hmax // h, vmax // v) for p, (h, v) in zip(planes, sampling, strict=True)]
    jfif = _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    return encode_baseline(planes, sampling, size, app=kw.pop("app", jfif), **kw)


# ---- Pillow-written files: every variant it can make ----------------------------------------------------


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["444", "422", "420"])
@pytest.mark.parametrize("quality", [50, 90, 100])
@pytest.mark.parametrize("name", PHOTOS)
def test_photos_match_pillow(inst: WapcInstance, name: str, quality: int, subsampling: int,
                             progressive: bool) -> None:
    data = jpeg(Image.fromarray(photo(name)), quality=quality, subsampling=subsampling, progressive=progressive)
    ours = decode(inst, data)
    assert ours.shape == (*photo(name).shape[:2], 3)
    assert_close(ours, data)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("quality", [50, 90, 100])
def test_grayscale(inst: WapcInstance, quality: int, progressive: bool) -> None:
    data = jpeg(Image.fromarray(photo("camera")), quality=quality, progressive=progressive)
    ours = decode(inst, data)
    assert ours.shape == (512, 512, 1)
    assert_close(ours, data)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("quality", [50, 95])
def test_adobe_cmyk(inst: WapcInstance, quality: int, progressive: bool) -> None:
    data = jpeg(Image.fromarray(photo("chelsea")).convert("CMYK"), quality=quality, progressive=progressive)
    assert b"Adobe" in data[:200]
    ours = decode(inst, data)
    assert ours.shape == (300, 451, 3)
    assert_close(ours, data)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("subsampling", [0, 2], ids=["444", "420"])
@pytest.mark.parametrize("restart", [{"restart_marker_blocks": 1}, {"restart_marker_blocks": 7},
                                     {"restart_marker_rows": 1}, {"restart_marker_rows": 3}],
                         ids=["blocks1", "blocks7", "rows1", "rows3"])
def test_restart_markers(inst: WapcInstance, restart: dict[str, int], subsampling: int, progressive: bool) -> None:
    data = jpeg(Image.fromarray(photo("coffee")), quality=80, subsampling=subsampling, progressive=progressive,
                **restart)
    assert b"\xff\xdd" in data and b"\xff\xd0" in data
    assert_close(decode(inst, data), data)


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["444", "422", "420"])
@pytest.mark.parametrize("name", ["chelsea", "astronaut"])
def test_scaled_decode_matches_draft(inst: WapcInstance, name: str, subsampling: int, progressive: bool,
                                     scale: int) -> None:
    data = jpeg(Image.fromarray(photo(name)), quality=90, subsampling=subsampling, progressive=progressive)
    ours = decode(inst, data, scale)
    h, w = photo(name).shape[:2]
    assert ours.shape == (-(-h // scale), -(-w // scale), 3)
    assert_close(ours, data, scale)


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_scaled_grayscale_and_cmyk(inst: WapcInstance, scale: int) -> None:
    for image in (Image.fromarray(photo("camera")), Image.fromarray(photo("chelsea")).convert("CMYK")):
        data = jpeg(image, quality=85, progressive=scale % 4 == 0)
        assert_close(decode(inst, data, scale), data, scale)


def exif_orientation(value: int, big_endian: bool) -> bytes:
    """APP1 Exif payload with IFD0 holding only Orientation (SHORT), in either byte order."""
    if big_endian:
        tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, value, 0) + b"\0" * 4
    else:
        tiff = b"II\x2a\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + b"\0" * 4
    return b"Exif\x00\x00" + tiff


@pytest.mark.parametrize("big_endian", [False, True], ids=["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(inst: WapcInstance, orientation: int, big_endian: bool) -> None:
    image = Image.fromarray(photo("chelsea"))
    data = jpeg(image, quality=90, subsampling=2, exif=exif_orientation(orientation, big_endian))
    assert info(inst, data) == {"width": 451, "height": 300, "orientation": orientation}
    ours = decode(inst, data)
    assert ours.shape == ((451, 300, 3) if orientation >= 5 else (300, 451, 3))
    assert_close(ours, data)
    # scaled and grey decodes are rotated the same way
    assert_close(decode(inst, data, 4), data, 4)
    grey = jpeg(Image.fromarray(photo("camera")[:200, :300]), quality=90,
                exif=exif_orientation(orientation, big_endian))
    assert_close(decode(inst, grey), grey)


def test_exif_written_by_pillow(inst: WapcInstance) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Waft"  # another IFD0 tag before/after, as real cameras write
    data = jpeg(Image.fromarray(photo("coffee")), quality=80, exif=exif.tobytes())
    assert info(inst, data)["orientation"] == 6
    assert_close(decode(inst, data), data)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 5), (17, 9), (33, 31), (15, 16), (16, 15), (301, 201)])
def test_odd_sizes(inst: WapcInstance, size: tuple[int, int]) -> None:
    w, h = size
    crop = photo("astronaut")[:h, :w]
    for subsampling in (0, 1, 2):
        for progressive in (False, True):
            data = jpeg(Image.fromarray(crop), quality=90, subsampling=subsampling, progressive=progressive)
            ours = decode(inst, data)
            assert ours.shape == (h, w, 3)
            assert_close(ours, data)
    data = jpeg(Image.fromarray(crop).convert("L"), quality=90)
    assert_close(decode(inst, data), data)


@pytest.mark.skipif(not TURBO, reason="bit-exactness is against libjpeg-turbo's arithmetic")
def test_bit_exact_with_libjpeg_turbo(inst: WapcInstance) -> None:
    """Same IDCTs, upsampling and colour tables as libjpeg-turbo: identical pixels, scaled or not."""
    for name in PHOTOS:
        for subsampling in (0, 1, 2):
            for progressive in (False, True):
                data = jpeg(Image.fromarray(photo(name)), quality=75, subsampling=subsampling,
                            progressive=progressive)
                for scale in (1, 2, 4, 8):
                    assert compare(decode(inst, data, scale), data, scale) == (0.0, 0), (name, subsampling, scale)
    for sampling in ([(1, 2), (1, 1), (1, 1)], [(4, 1), (1, 1), (1, 1)], [(2, 2), (1, 2), (2, 1)]):
        data = crafted(sampling)
        assert compare(decode(inst, data), data) == (0.0, 0), sampling


# ---- files from the small encoder ---------------------------------------------------------------------


SAMPLINGS = {
    "440": [(1, 2), (1, 1), (1, 1)],
    "411": [(4, 1), (1, 1), (1, 1)],
    "410": [(4, 2), (1, 1), (1, 1)],
    "mixed": [(2, 2), (1, 2), (2, 1)],
    "chroma-full": [(1, 1), (2, 2), (2, 2)],  # luma subsampled, chroma not: legal, rare
    "422v": [(2, 1), (1, 1), (2, 1)],
}


@pytest.mark.parametrize("sampling", list(SAMPLINGS.values()), ids=list(SAMPLINGS))
@pytest.mark.parametrize("scale", [1, 2, 8])
def test_other_sampling_factors(inst: WapcInstance, sampling: list[tuple[int, int]], scale: int) -> None:
    data = crafted(sampling, size=(123, 85) if scale == 1 else (256, 160))
    assert_close(decode(inst, data, scale), data, scale)


@pytest.mark.parametrize("restart", [0, 1, 5])
def test_multi_scan_sequential(inst: WapcInstance, restart: int) -> None:
    """One non-interleaved baseline scan per component (legal, rarely written), with restarts."""
    for sampling in (SAMPLINGS["440"], [(2, 2), (1, 1), (1, 1)]):
        data = crafted(sampling, separate_scans=True, restart=restart)
        assert_close(decode(inst, data), data)


def test_16bit_quant_tables_and_long_codes(inst: WapcInstance) -> None:
    data = crafted([(2, 2), (1, 1), (1, 1)], qtable16=True, quality_scale=0.1)
    assert_close(decode(inst, data), data)


def test_rgb_and_ycck_colour_spaces(inst: WapcInstance) -> None:
    rgb = photo("coffee")[50:130, 60:180]
    planes = [rgb[..., i] for i in range(3)]
    size = (rgb.shape[1], rgb.shape[0])
    adobe_rgb = _segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00")  # transform 0: RGB
    for data in (encode_baseline(planes, [(1, 1)] * 3, size, app=adobe_rgb),
                 encode_baseline(planes, [(1, 1)] * 3, size, ids=(ord("R"), ord("G"), ord("B")))):
        ours = decode(inst, data)
        assert_close(ours, data)
        assert np.abs(ours.astype(int) - rgb).mean() < 8  # the photo itself, not YCbCr-converted (~50 off)
    k = (255 - rgb.max(axis=2)).astype(np.uint8)
    ycck = [*ycbcr_planes(rgb), k]
    adobe_ycck = _segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x02")  # transform 2: YCCK
    for sampling in ([(1, 1)] * 4, [(2, 2), (1, 1), (1, 1), (2, 2)]):
        hmax, vmax = sampling[0]
        planes = [subsample(p, hmax // h, vmax // v) for p, (h, v) in zip(ycck, sampling, strict=True)]
        data = encode_baseline(planes, sampling, size, app=adobe_ycck)
        assert Image.open(io.BytesIO(data)).mode == "CMYK"
        assert_close(decode(inst, data), data)


# ---- what is refused, and how -----------------------------------------------------------------------


def patch_sof(data: bytes, **fields: int) -> bytes:
    """Rewrite the frame header of a Pillow JPEG: marker, precision, height, width."""
    pos = next(data.find(bytes([0xFF, m])) for m in (0xC0, 0xC2) if data.find(bytes([0xFF, m])) > 0)
    out = bytearray(data)
    if "marker" in fields:
        out[pos + 1] = fields["marker"]
    if "precision" in fields:
        out[pos + 4] = fields["precision"]
    if "height" in fields:
        out[pos + 5:pos + 7] = struct.pack(">H", fields["height"])
    if "width" in fields:
        out[pos + 7:pos + 9] = struct.pack(">H", fields["width"])
    return bytes(out)


@pytest.fixture(scope="module")
def small() -> bytes:
    return jpeg(Image.fromarray(photo("chelsea")[:64, :80]), quality=85)


@pytest.mark.parametrize(("fields", "message"), [
    ({"marker": 0xC9}, "unsupported JPEG: arithmetic coding"),
    ({"marker": 0xCA}, "unsupported JPEG: arithmetic coding"),
    ({"marker": 0xC3}, "unsupported JPEG: lossless coding"),
    ({"marker": 0xC5}, "unsupported JPEG: hierarchical coding"),
    ({"precision": 12}, "unsupported JPEG: 12-bit precision"),
    ({"height": 0}, "unsupported JPEG: height defined by a DNL marker"),
    ({"width": 65535, "height": 65535}, "JPEG too large: 4294836225 pixels exceeds the limit of 50000000"),
])
def test_refused_with_a_clear_reason(inst: WapcInstance, small: bytes, fields: dict[str, int], message: str) -> None:
    assert decode_error(inst, patch_sof(small, **fields)) == message
    assert decode(inst, small).shape == (64, 80, 3)  # and the instance carries on


def test_max_pixels_is_checked_before_decoding(inst: WapcInstance, small: bytes) -> None:
    assert decode_error(inst, small, maxPixels=5119) == "JPEG too large: 5120 pixels exceeds the limit of 5119"
    assert decode(inst, small, maxPixels=5120).shape == (64, 80, 3)
    huge = patch_sof(small, width=65535, height=65535)
    assert info(inst, huge) == {"width": 65535, "height": 65535, "orientation": 1}  # header only: fine


def test_arithmetic_progressive_and_other_errors(inst: WapcInstance, small: bytes) -> None:
    assert decode_error(inst, b"") == "empty JPEG input"
    assert decode_error(inst, b"\x89PNG\r\n\x1a\n") == "not a JPEG file (no SOI marker)"
    assert decode_error(inst, b"\xff\xd8") == "truncated JPEG header"
    assert decode_error(inst, small, scale=3) == "invalid JPEG scale (must be 1, 2, 4 or 8)"
    assert decode_error(inst, b"\xff\xd8\xff\xd9") == "corrupt JPEG: no frame header before end of image"
    two = crafted([(1, 1), (1, 1), (1, 1)])
    sof = two.find(b"\xff\xc0")
    two_comps = two[:sof + 2] + struct.pack(">H", 8 + 6) + two[sof + 4:sof + 9] + b"\x02" + two[sof + 10:sof + 16] \
        + two[sof + 19:]
    assert decode_error(inst, two_comps) == "unsupported JPEG: only 1, 3 or 4 components are supported"


def test_truncated_everywhere(inst: WapcInstance) -> None:
    """Every 997th prefix of a baseline and a progressive photo: a clear error, never a trap."""
    for progressive in (False, True):
        data = jpeg(Image.fromarray(photo("astronaut")), quality=90, progressive=progressive)
        reasons = set()
        for cut in range(0, len(data) - 2, 997):
            reasons.add(decode_error(inst, data[:cut]))
        assert reasons <= {"empty JPEG input", "not a JPEG file (no SOI marker)", "truncated JPEG header",
                           "truncated JPEG scan", "truncated JPEG: missing scans or end-of-image marker"}, reasons
        assert "truncated JPEG scan" in reasons
        # Only the EOI missing: a sequential image is complete and decodes; a progressive one may lack scans.
        if progressive:
            assert decode_error(inst, data[:-2]) == "truncated JPEG: missing scans or end-of-image marker"
        else:
            assert_close(decode(inst, data[:-2]), data)
    assert decode(inst, data).shape == (512, 512, 3)


def test_random_corruption_never_traps(inst: WapcInstance) -> None:
    """~300 files with random byte flips, over baseline, progressive, restart markers, CMYK and grey:
    each decodes or fails with a message; none traps, and the instance keeps working throughout."""
    rng = random.Random(6)
    sources = [
        jpeg(Image.fromarray(photo("chelsea")[:120, :160]), quality=75),
        jpeg(Image.fromarray(photo("chelsea")[:120, :160]), quality=75, progressive=True),
        jpeg(Image.fromarray(photo("coffee")[:96, :128]), quality=60, subsampling=1, restart_marker_blocks=3),
        jpeg(Image.fromarray(photo("coffee")[:96, :128]).convert("CMYK"), quality=60, progressive=True),
        jpeg(Image.fromarray(photo("camera")[:100, :100]), quality=90, progressive=True),
        crafted(SAMPLINGS["mixed"], size=(64, 48)),
    ]
    outcomes = {"ok": 0, "error": 0}
    for case in range(300):
        data = bytearray(sources[case % len(sources)])
        for _ in range(rng.choice((1, 1, 2, 4, 16))):
            data[rng.randrange(len(data))] = rng.randrange(256)
        for scale in (1, 8) if case % 10 == 0 else (1,):
            try:
                out = decode(inst, bytes(data), scale)
                assert out.ndim == 3 and out.shape[2] in (1, 3)
                outcomes["ok"] += 1
            except GuestError as exc:
                assert str(exc)
                outcomes["error"] += 1
            except ActorTrap as exc:  # pragma: no cover - the failure being tested for
                pytest.fail(f"case {case}: trap {exc}")
    assert outcomes["ok"] and outcomes["error"], outcomes
    assert_close(decode(inst, sources[0]), sources[0])


def _sanitizing_compiler() -> str | None:
    """A host C compiler with ASan + UBSan (gcc or clang), or None."""
    import shutil

    return next((cc for cc in ("cc", "gcc", "clang") if shutil.which(cc)), None)


@pytest.mark.skipif(_sanitizing_compiler() is None, reason="no host C compiler for the sanitizer build")
def test_native_fuzz_under_sanitizers(tmp_path: Path) -> None:
    """In wasm, a read past the input inside linear memory would not trap, so the decoder is also built
    natively with AddressSanitizer + UBSan and fed ~5600 mutated files of every kind above: no report."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    binary = tmp_path / "jpegfuzz"
    build = subprocess.run(
        [_sanitizing_compiler(), "-O1", "-g", "-std=c11", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-o", str(binary),
         str(root / "tests/actors/jpegcheck/jpegfuzz.c"), str(root / "actors/preprocessor/jpeg.c")],
        capture_output=True, text=True, check=False)
    if build.returncode != 0:
        pytest.skip(f"sanitizer build unavailable: {build.stderr[-300:]}")
    chelsea = Image.fromarray(photo("chelsea")[:90, :130])
    corpus = [jpeg(chelsea, quality=70, subsampling=ss, progressive=p) for ss in (0, 1, 2) for p in (False, True)]
    corpus += [jpeg(chelsea.convert("L"), quality=70, progressive=True), jpeg(chelsea.convert("CMYK"), quality=70),
               jpeg(chelsea, quality=70, progressive=True, restart_marker_blocks=2),
               jpeg(chelsea, quality=70, exif=exif_orientation(6, True)),
               crafted(SAMPLINGS["mixed"], size=(40, 24)), crafted(SAMPLINGS["440"], size=(40, 24), restart=3,
                                                                      separate_scans=True)]
    files = []
    for i, data in enumerate(corpus):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(data)
    run = subprocess.run([str(binary), "400", *map(str, files)], capture_output=True, text=True, check=False,
                         timeout=600, env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert run.stdout.startswith("ok "), run.stdout


# ---- decode work budget ----------------------------------------------------------------------------

def _with_repeated_dc_refinement(data: bytes, times: int) -> bytes:
    """A progressive JPEG with its DC refinement scan (interleaved, Ah=1 Al=0: one bit per block, so any data
    is valid) repeated `times` more times before EOI: every repeat re-visits every block of the image."""
    i = 2
    while i < len(data):
        if data[i] != 0xFF or data[i + 1] in (0x00, 0xD8, 0x01) or 0xD0 <= data[i + 1] <= 0xD7:
            i += 1 if data[i] != 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if data[i + 1] == 0xDA:
            header = data[i + 4:i + 2 + length]
            ns = header[0]
            ss, se, a = header[1 + 2 * ns], header[2 + 2 * ns], header[3 + 2 * ns]
            end = i + 2 + length
            while not (data[end] == 0xFF and data[end + 1] != 0x00 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            if ns > 1 and ss == se == 0 and a == 0x10:
                assert data.endswith(b"\xff\xd9")
                return data[:-2] + data[i:end] * times + b"\xff\xd9"
            i = end
        else:
            i += 2 + length
    raise AssertionError("no DC refinement scan found")


def test_scans_that_revisit_every_block_too_often_are_refused_early(inst: WapcInstance) -> None:
    """The attack: a small file whose hundreds of scans each re-decode the whole image held an instance for its
    whole deadline. Block decodes are budgeted (32 per block on average) before each scan."""
    image = Image.fromarray(np.random.default_rng(7).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    image.save(buf, "JPEG", progressive=True, quality=90)
    plain = buf.getvalue()
    np.testing.assert_array_equal(decode(inst, plain), reference(plain))  # a real progressive file: fine
    assert decode(inst, _with_repeated_dc_refinement(plain, 20)).shape == (64, 64, 3)  # odd but within budget
    reason = decode_error(inst, _with_repeated_dc_refinement(plain, 100))
    assert "decode each block more than 32 times" in reason
    np.testing.assert_array_equal(decode(inst, plain), reference(plain))  # the instance is unharmed
