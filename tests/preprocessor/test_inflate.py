"""The SDK's inflate (actors/sdk/waft_inflate.c), run in wasm through the pre-processor's Debug.Inflate
operation, against Python's zlib: every compression level and strategy, stored blocks, raw DEFLATE,
random and real data, and corrupt streams (an error, never a trap)."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest
from pp_support import INFLATE, call, new_instance

from waft.host.wapc import WapcInstance

ROOT = Path(__file__).resolve().parents[2]
RNG = random.Random(99)
DATA = {
    "empty": b"",
    "one": b"x",
    "zeros": bytes(200_000),
    "random": RNG.randbytes(100_000),
    "text": (ROOT / "actors" / "sdk" / "waft_inflate.c").read_bytes() * 4,
    "mixed": b"".join(RNG.randbytes(RNG.randint(1, 300)) * RNG.randint(1, 40) for _ in range(300)),
    "long-matches": (b"abc" * 30_000) + RNG.randbytes(5000) + (b"abc" * 30_000),
}
STRATEGIES = {"default": zlib.Z_DEFAULT_STRATEGY, "filtered": zlib.Z_FILTERED, "huffman": zlib.Z_HUFFMAN_ONLY,
              "rle": zlib.Z_RLE, "fixed": zlib.Z_FIXED}


@pytest.fixture(scope="module")
def inst() -> WapcInstance:
    return new_instance()


def inflate(inst: WapcInstance, data: bytes, *, zlib_format: bool = True, max_out: int = 1 << 20) -> dict:
    return call(inst, INFLATE, {"data": data, "zlib": zlib_format, "max": max_out})


def compress(data: bytes, level: int, strategy: int, wbits: int = 15) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("name", list(DATA))
@pytest.mark.parametrize("level", list(range(10)))
def test_every_level_matches_zlib(inst: WapcInstance, name: str, level: int) -> None:
    data = DATA[name]
    for strategy in STRATEGIES.values():
        reply = inflate(inst, compress(data, level, strategy))
        assert reply["result"] == {"success": None}
        assert reply["data"] == data


@pytest.mark.parametrize("name", ["random", "text", "mixed"])
def test_raw_deflate_and_small_windows(inst: WapcInstance, name: str) -> None:
    data = DATA[name]
    for wbits in (9, 12, 15):
        assert inflate(inst, compress(data, 6, zlib.Z_DEFAULT_STRATEGY, wbits))["data"] == data
        raw = compress(data, 6, zlib.Z_DEFAULT_STRATEGY, -wbits)
        assert inflate(inst, raw, zlib_format=False)["data"] == data


def test_stored_blocks_across_flushes(inst: WapcInstance) -> None:
    """Level 0 is all stored blocks (max 65535 bytes each); sync flushes add empty stored blocks in
    the middle of Huffman-coded data."""
    data = DATA["random"] * 3
    assert inflate(inst, zlib.compress(data, 0))["data"] == data
    c = zlib.compressobj(6)
    text = DATA["text"][:20_000]
    parts = [c.compress(text[i:i + 777]) + c.flush(zlib.Z_SYNC_FLUSH) for i in range(0, len(text), 777)]
    stream = b"".join(parts) + c.flush()
    assert b"\x00\x00\xff\xff" in stream  # the empty stored blocks of the sync flushes
    assert inflate(inst, stream)["data"] == text


def test_output_larger_than_the_limit(inst: WapcInstance) -> None:
    reply = inflate(inst, zlib.compress(bytes(5000)), max_out=4999)
    assert reply["result"] == {"error": {"invalidEncoding": "output larger than the buffer"}}
    assert inflate(inst, zlib.compress(bytes(5000)), max_out=5000)["data"] == bytes(5000)


def test_corrupt_streams_report_errors(inst: WapcInstance) -> None:
    good = zlib.compress(DATA["text"][:5000], 9)
    cases = {
        "incorrect header check": good[:1] + bytes([good[1] ^ 1]) + good[2:],
        "preset dictionary not supported": b"\x78\xbb" + good[2:],
        "incorrect data check": good[:-1] + bytes([good[-1] ^ 1]),
        "unexpected end of compressed data": good[:-10],
        "invalid stored block lengths": b"\x78\x01" + b"\x01\x05\x00\x00\x00hello",
    }
    for reason, stream in cases.items():
        assert inflate(inst, stream)["result"] == {"error": {"invalidEncoding": reason}}, reason
    # a raw stream made against a preset dictionary refers back past the start of the output
    c = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=b"hello world" * 10)
    raw = c.compress(b"hello world" * 5) + c.flush()
    assert inflate(inst, raw, zlib_format=False)["result"] == \
        {"error": {"invalidEncoding": "invalid distance too far back"}}
    assert inflate(inst, b"\x07", zlib_format=False)["result"] == {"error": {"invalidEncoding": "invalid block type"}}


def test_random_corruption_never_traps(inst: WapcInstance) -> None:
    rng = random.Random(7)
    base = zlib.compress(DATA["mixed"][:30_000], 6)
    outcomes = set()
    for _ in range(500):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        reply = inflate(inst, bytes(data), max_out=64_000)
        outcomes.add("error" if "error" in reply["result"] else "ok")
        if "error" not in reply["result"]:  # a flip zlib also accepts must give zlib's bytes
            assert reply["data"] == zlib.decompress(bytes(data))
    for _ in range(200):  # pure garbage, as raw deflate
        reply = inflate(inst, rng.randbytes(rng.randint(0, 2000)), zlib_format=False, max_out=70_000)
        assert set(reply["result"]) <= {"error", "success"}
    assert "error" in outcomes
    assert inflate(inst, base, max_out=64_000)["data"] == DATA["mixed"][:30_000]
