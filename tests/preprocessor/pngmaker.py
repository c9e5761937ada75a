"""A small PNG encoder for the tests: every colour type, bit depth, filter and Adam7 interlacing.

Pillow writes only some of these (no interlacing, no 2/4-bit grey, no 16-bit RGBA from arrays), so the
tests build their PNGs here and use Pillow as the independent *decoder* that the actor must agree with.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: (x0, y0, dx, dy).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def chunk(kind: bytes, data: bytes, *, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", value & 0xFFFFFFFF)


def _pack_rows(samples: np.ndarray, depth: int) -> list[bytes]:
    """(h, w*channels) integer samples -> one packed byte string per row (no filter byte)."""
    rows = []
    for row in samples:
        if depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            padded = np.zeros(-(-len(row) // per) * per, np.uint16)
            padded[:len(row)] = row
            groups = padded.reshape(-1, per)
            shifts = np.arange(per - 1, -1, -1) * depth
            rows.append((groups << shifts).sum(axis=1).astype(np.uint8).tobytes())
    return rows


def _filter(rows: list[bytes], bpp: int, filters: Sequence[int]) -> bytes:
    """Filter every row (vectorised over the whole pass), row i with filters[i % len(filters)]."""
    if not rows:
        return b""
    raw = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), -1).astype(np.int16)
    a = np.zeros_like(raw)
    a[:, bpp:] = raw[:, :-bpp]
    b = np.zeros_like(raw)
    b[1:] = raw[:-1]
    c = np.zeros_like(raw)
    c[:, bpp:] = b[:, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    preds = np.stack([np.zeros_like(raw), a, b, (a + b) // 2, paeth])
    types = np.asarray([filters[i % len(filters)] for i in range(len(rows))])
    filtered = (raw - preds[types[:, None], np.arange(len(rows))[:, None], np.arange(raw.shape[1])[None, :]]) & 0xFF
    out = np.concatenate([types[:, None], filtered], axis=1).astype(np.uint8)
    return out.tobytes()


def encode(samples: np.ndarray, color_type: int, depth: int, *, palette: np.ndarray | None = None,
           trns: bytes | None = None, interlace: bool = False, filters: Sequence[int] = (0, 1, 2, 3, 4),
           level: int = 6, idat_split: int = 0, extra_chunks: Sequence[bytes] = ()) -> bytes:
    """samples: (h, w) or (h, w, channels) integers already at `depth` (palette indices for type 3)."""
    samples = np.asarray(samples)
    h, w = samples.shape[:2]
    ch = CHANNELS[color_type]
    flat = samples.reshape(h, w, ch)
    bpp = max(1, ch * depth // 8)
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = flat[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += _filter(_pack_rows(sub.reshape(sub.shape[0], -1), depth), bpp, filters)
    else:
        raw = _filter(_pack_rows(flat.reshape(h, -1), depth), bpp, filters)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    out = SIGNATURE + chunk(b"IHDR", ihdr)
    for extra in extra_chunks:
        out += extra
    if palette is not None:
        out += chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        out += chunk(b"tRNS", trns)
    data = zlib.compress(raw, level)
    if idat_split:
        for i in range(0, len(data), idat_split):
            out += chunk(b"IDAT", data[i:i + idat_split])
    else:
        out += chunk(b"IDAT", data)
    return out + chunk(b"IEND", b"")
