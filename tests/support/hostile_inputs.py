"""Hostile inputs shared by the hostile tests and `make chaos`'s hostile client.

The expensive small JPEG of issue "secure by default": a progressive grey 7071 x 7071 image (just under the
50 MP limit) whose file is only AC scans made of EOB runs. Each scan costs a few dozen bytes (an EOB run
covers up to 32 767 blocks) but makes the decoder visit all 781 456 blocks; with no DC scan every pixel is
mid-grey. Written by hand, byte by byte, because no encoder makes such a file on purpose.
"""

from __future__ import annotations

import struct

SIDE = 7071
MAX_EOB_RUN = 32767


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def _eob_scan_data(blocks: int) -> bytes:
    """Entropy-coded data: EOB14 symbols (Huffman code "0", 1 bit) with 14 extra bits, byte-stuffed."""
    bits = []
    while blocks:
        run = min(blocks, MAX_EOB_RUN)  # EOBr codes a run of 2**r + (r extra bits)
        r = run.bit_length() - 1
        bits.append(_code(r) + (format(run - (1 << r), f"0{r}b") if r else ""))
        blocks -= run
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)  # pad with ones, as the standard says
    out = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i:i + 8], 2)
        out.append(byte)
        if byte == 0xFF:
            out.append(0x00)
    return bytes(out)


#: The AC table: EOB14 (0xE0) has code "0"; EOB0..EOB13 get longer codes, for a last short run.
_SYMBOLS = [0xE0, *[(r << 4) for r in range(14)]]


def _code(r: int) -> str:
    """Canonical Huffman codes of `_counts()`: 0xE0 -> "0", then 15 more symbols of 5 bits (10000...)."""
    if r == 14:
        return "0"
    return format(0b10000 + r, "05b")


def _counts() -> list[int]:
    counts = [0] * 16
    counts[0] = 1  # one 1-bit code
    counts[4] = 14  # fourteen 5-bit codes, after the 1-bit code: 10000 .. 11101
    return counts


def eob_scan_jpeg(scans: int, side: int = SIDE) -> bytes:
    """A progressive grey `side` x `side` JPEG of one AC first scan (Al=1) and `scans - 1` AC refinement scans
    (Ah=1, Al=0), each all EOB runs: `scans` block visits per block, for ~60 bytes a scan."""
    blocks = ((side + 7) // 8) ** 2
    out = bytearray(b"\xff\xd8")
    out += _segment(0xDB, b"\x00" + bytes([1] * 64))  # quantisation table 0, all ones
    out += _segment(0xC2, struct.pack(">BHHB", 8, side, side, 1) + b"\x01\x11\x00")  # SOF2, one component
    out += _segment(0xC4, b"\x10" + bytes(_counts()) + bytes(_SYMBOLS))  # AC table 0
    data = _eob_scan_data(blocks)
    for i in range(scans):
        ah_al = 0x01 if i == 0 else 0x10
        out += _segment(0xDA, bytes([1, 1, 0x00, 1, 63, ah_al])) + data
    out += b"\xff\xd9"
    return bytes(out)
