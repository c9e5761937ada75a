"""Seeded mutation fuzzing of MlPreprocessing.Convert through the waPC binding (issue 6).

Mutated JPEG and PNG files (bit flips, byte overwrites with interesting values, inserted and deleted runs,
truncation, spliced tails, duplicated segments/chunks, patched size fields; for PNG mostly with the chunk CRCs
fixed up, and mutated scanlines re-deflated, so mutants reach the inflate, unfilter and de-interlace code),
and BMP, GIF and WebP files (the vendored Wuffs and libwebp, issue 15) go to ONE pre-processor instance.
Every answer must be a ConversionOutput whose result is success or
`invalidEncoding`; a trap (including the per-call deadline) or a guest error is a failure: the instance is then
re-created and the case recorded, and the test fails listing the first few failing inputs (seed + index,
reproducible).

Bounded by count, never by time: WAFT_FUZZ_COUNT (default 20 000 in `make test`: 4 s on the idle 2-core dev
machine, 12 s when it is busy; ~0.2-0.5 ms a case), WAFT_FUZZ_SEED (default 6).
A long run (`make fuzz`; 500 000 cases took 236 s niced on a busy machine):
`WAFT_FUZZ_COUNT=500000 .venv/bin/python -m pytest -q tests/preprocessor/test_preprocessor_fuzz.py`.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from typing import Any

import msgpack
import numpy as np
from PIL import Image
from pngmaker import encode
from pp_support import CONVERT, DEFAULT_SPEC, new_instance, photo

from waft.host.wapc import ActorTrap, GuestError, WapcInstance

COUNT = int(os.environ.get("WAFT_FUZZ_COUNT", "20000"))
SEED = int(os.environ.get("WAFT_FUZZ_SEED", "6"))
#: Small output and a 1 MP pixel cap keep each call to milliseconds; one case in 8 uses the full
#: EfficientNet-Lite spec (224x224 from a 256 shorter side, bicubic or bilinear) so resize paths are fuzzed too.
SMALL_SPEC: dict[str, Any] = {**DEFAULT_SPEC, "size": [24, 24], "resize_to": 28, "max_pixels": 1 << 20}
FULL_SPEC: dict[str, Any] = {**DEFAULT_SPEC, "max_pixels": 1 << 20}
#: Cycled per case. The seeds are ~64x48, so resize_to 6 / 12 / 24 make the actor decode JPEGs at 1/8, 1/4
#: and 1/2 DCT scale (preprocessor.c's draft_denom): the reduced IDCTs and the DC-only path are fuzzed too.
SPECS: tuple[dict[str, Any], ...] = (
    FULL_SPEC, SMALL_SPEC, {**SMALL_SPEC, "size": [4, 4], "resize_to": 6}, SMALL_SPEC,
    {**SMALL_SPEC, "size": [12, 12], "resize_to": 12}, SMALL_SPEC,
    {**SMALL_SPEC, "size": [24, 24], "resize_to": 24, "layout": "NHWC"}, SMALL_SPEC,
    {**FULL_SPEC, "resample": "bicubic"}, SMALL_SPEC, {**SMALL_SPEC, "size": [4, 4], "resize_to": 6, "dtype": "u8"},
    SMALL_SPEC, {**SMALL_SPEC, "resize": "stretch", "size": [5, 7]}, SMALL_SPEC,
    {**SMALL_SPEC, "size": [12, 12], "resize_to": 12, "color": "BGR"}, SMALL_SPEC,
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INTERESTING = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE, 0xD8, 0xD9, 0xDA, 0xC0, 0xC2, 0xC4, 0xDB, 0xDD)


def _jpeg(image: Image.Image, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **params)
    return buf.getvalue()


def seeds() -> list[bytes]:
    """Small valid files covering the decoders' paths: baseline/progressive, 4:2:0/4:2:2/4:4:4, grey, CMYK,
    restart markers, EXIF orientation; PNG of every colour type, 1-16 bits, palette + tRNS, interlaced."""
    cat = Image.fromarray(photo("chelsea")[60:108, 150:214])  # 64 x 48
    grey = Image.fromarray(photo("camera")[100:140, 200:250])
    exif = Image.Exif()
    exif[0x0112] = 6
    out = [
        _jpeg(cat, quality=85), _jpeg(cat, quality=60, progressive=True), _jpeg(cat, quality=90, subsampling=0),
        _jpeg(cat, quality=75, subsampling=1), _jpeg(grey, quality=80), _jpeg(grey, quality=70, progressive=True),
        _jpeg(cat.convert("CMYK"), quality=80), _jpeg(cat, quality=80, restart_marker_blocks=2),
        _jpeg(cat, quality=80, progressive=True, subsampling=0, exif=exif.tobytes()),
    ]
    rgb = np.asarray(cat)
    g = np.asarray(grey)
    rng = np.random.default_rng(SEED)
    out += [
        encode(rgb, 2, 8), encode(rgb, 2, 8, interlace=True), encode(rgb.astype(np.uint16) * 257, 2, 16),
        encode(np.dstack([rgb, rgb[..., :1]]), 6, 8), encode(g, 0, 8, interlace=True), encode(g >> 4, 0, 4),
        encode(g >> 7, 0, 1), encode(np.dstack([g, g]), 4, 8), encode(g.astype(np.uint16) * 257, 0, 16),
        encode(rng.integers(0, 16, (20, 30)), 3, 4, palette=rng.integers(0, 256, (16, 3)).astype(np.uint8),
               trns=bytes(range(0, 160, 10))),
    ]
    buf = io.BytesIO()
    cat.quantize(64).save(buf, "PNG")
    out.append(buf.getvalue())
    # BMP, GIF and WebP (vendored Wuffs and libwebp, issue 15): palette and direct BMPs, a two-frame GIF,
    # lossless, lossy (with alpha too) and animated WebP.
    rgba = cat.convert("RGBA")
    rgba.putalpha(grey.resize(cat.size))
    for image, fmt, params in (
        (cat, "BMP", {}), (cat.quantize(16), "BMP", {}), (grey, "BMP", {}), (rgba, "BMP", {}),
        (cat.quantize(64), "GIF", {"save_all": True, "append_images": [grey], "interlace": True}),
        (grey, "GIF", {}), (cat, "WEBP", {"lossless": True}), (rgba, "WEBP", {"lossless": True}),
        (cat, "WEBP", {"quality": 70}), (rgba, "WEBP", {"quality": 50}),
        (cat, "WEBP", {"save_all": True, "append_images": [grey.resize(cat.size).convert("RGB")], "quality": 60}),
    ):
        buf = io.BytesIO()
        image.save(buf, fmt, **params)
        out.append(buf.getvalue())
    return out


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5, 8))):
        if not b:
            break
        op = rng.randrange(9)
        i = rng.randrange(len(b))
        if op == 0:  # bit flip
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # interesting byte
            b[i] = rng.choice(INTERESTING)
        elif op == 2:  # random run
            n = rng.randint(1, 16)
            b[i:i + n] = bytes(rng.randrange(256) for _ in range(n))
        elif op == 3:  # delete a run
            del b[i:i + rng.randint(1, 64)]
        elif op == 4:  # insert a run
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        elif op == 5:  # truncate
            del b[rng.randrange(len(b) // 8, len(b)):]
        elif op == 6:  # duplicate a slice (segments, chunks, scans)
            j = rng.randrange(len(b))
            lo, hi = min(i, j), max(i, j)
            b[hi:hi] = b[lo:lo + 256]
        elif op == 7:  # splice another seed's tail
            other = rng.choice(corpus)
            b[i:] = other[rng.randrange(len(other)):]
        else:  # patch a 16/32-bit big-endian field with an edge value (sizes, lengths, counts)
            value = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                0xFFFFFFFF))
            if rng.random() < 0.5 and i + 2 <= len(b):
                b[i:i + 2] = struct.pack(">H", value & 0xFFFF)
            elif i + 4 <= len(b):
                b[i:i + 4] = struct.pack(">I", value)
    return bytes(b)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute the CRC of every chunk whose length fits, so mutants get past the CRC check into IHDR
    parsing, inflate, unfiltering and de-interlacing."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    b = bytearray(data)
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(b):
        length = struct.unpack(">I", b[pos:pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(b):
            break
        b[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(b[pos + 4:end])) & 0xFFFFFFFF)
        pos = end + 4
    return bytes(b)


def mutate_png_pixels(rng: random.Random, data: bytes) -> bytes:
    """Mutate the inflated scanlines (filter bytes, samples, length) and re-deflate them: a well-formed
    zlib stream carrying bad filtered data."""
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        chunks.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    raw = bytearray(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")))
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(raw) + 1)
        choice = rng.randrange(3)
        if choice == 0 and i < len(raw):
            raw[i] = rng.randrange(256)
        elif choice == 1:
            del raw[i:i + rng.randint(1, 40)]
        else:
            raw[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    idat = zlib.compress(bytes(raw), rng.choice((0, 1, 6, 9)))
    out, placed = bytearray(PNG_SIGNATURE), False
    for kind, body in chunks:
        if kind == b"IDAT":
            if placed:
                continue
            body, placed = idat, True
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return bytes(out)


def make_case(rng: random.Random, corpus: list[bytes]) -> bytes:
    data = rng.choice(corpus)
    if data.startswith(PNG_SIGNATURE):
        if rng.random() < 0.3:
            data = mutate_png_pixels(rng, data)
            return data if rng.random() < 0.5 else fix_png_crcs(mutate(rng, data, corpus))
        data = mutate(rng, data, corpus)
        return fix_png_crcs(data) if rng.random() < 0.75 else data
    return mutate(rng, data, corpus)


def run(count: int, seed: int) -> tuple[dict[str, int], list[str]]:
    """Fuzz `count` inputs; returns outcome counts and the failures (seed, index, what)."""
    rng = random.Random(seed)
    corpus = seeds()
    inst: WapcInstance = new_instance()
    outcomes = {"success": 0, "invalidEncoding": 0}
    failures: list[str] = []
    for index in range(count):
        data = make_case(rng, corpus)
        spec = SPECS[index % len(SPECS)]
        try:
            reply = msgpack.unpackb(inst.call(CONVERT, msgpack.packb({"data": data, "spec": spec},
                                                                     use_bin_type=True)), raw=False)
        except ActorTrap as exc:
            failures.append(f"seed {seed} index {index}: trap {exc}")
            inst = new_instance()  # a trapped instance is spent (docs/architecture.md)
            continue
        except GuestError as exc:
            failures.append(f"seed {seed} index {index}: guest error {exc}")
            continue
        result = reply.get("result")
        if result == {"success": None}:
            outcomes["success"] += 1
        elif isinstance(result, dict) and set(result) == {"error"} and set(result["error"]) == {"invalidEncoding"}:
            outcomes["invalidEncoding"] += 1
        else:
            failures.append(f"seed {seed} index {index}: unexpected result {result!r}")
    return outcomes, failures


def test_seeds_are_valid() -> None:
    inst = new_instance()
    for data in seeds():
        reply = msgpack.unpackb(inst.call(CONVERT, msgpack.packb({"data": data, "spec": SMALL_SPEC})), raw=False)
        assert reply["result"] == {"success": None}, reply["result"]


def test_mutated_files_never_crash_the_actor() -> None:
    outcomes, failures = run(COUNT, SEED)
    assert not failures, f"{len(failures)} of {COUNT} failed; first: " + "; ".join(failures[:5])
    assert sum(outcomes.values()) == COUNT
    assert outcomes["invalidEncoding"] > 0 and outcomes["success"] > 0, outcomes  # the mutations do bite
