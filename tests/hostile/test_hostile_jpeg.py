"""The 38 KB progressive 7071 x 7071 JPEG of the issue, made by `hostile_inputs`, against the pre-processor.

Pillow (libjpeg) is the reference for what the crafted file is: an all-grey image, so the generator makes a
real JPEG and the refusal below is the decode budget's, not a parse error.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hostile_inputs import SIDE, eob_scan_jpeg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "actors"))
from actor_support import compiled

from waft.host.wapc import GuestError, Limits


def _decode(data: bytes, scale: int) -> np.ndarray:
    inst = compiled("jpegcheck").instantiate(lambda *_: b"", Limits(memory_bytes=512 << 20, deadline_ms=60_000))
    reply = msgpack.unpackb(inst.call("Jpeg.Decode", msgpack.packb({"data": data, "scale": scale})))
    return np.frombuffer(reply["pixels"], np.uint8).reshape(reply["height"], reply["width"], reply["channels"])


def _pillow(data: bytes, scale: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("L", (image.width // scale, image.height // scale))
    return np.asarray(image.convert("L"))


@pytest.mark.parametrize("scans", [1, 32])
def test_the_crafted_file_is_a_real_jpeg_decoded_as_pillow_does(scans: int) -> None:
    data = eob_scan_jpeg(scans, side=400)  # the budget is per block, so a smaller side shows the same
    np.testing.assert_array_equal(_decode(data, 8)[..., 0], _pillow(data, 8))


def test_the_38_kb_file_is_refused_by_the_decode_budget() -> None:
    data = eob_scan_jpeg(500)
    assert 30_000 < len(data) < 40_000 and Image.open(io.BytesIO(data)).size == (SIDE, SIDE)
    with pytest.raises(GuestError, match="decode each block more than 32 times"):
        _decode(data, 8)


def test_the_budget_is_judged_from_the_scan_headers_before_any_buffer() -> None:
    """Under a 32 MiB memory cap the 7071 x 7071 image's coefficients (100 MB) cannot be allocated: the refusal
    naming the budget shows the file was judged from its scan headers first."""
    inst = compiled("jpegcheck").instantiate(lambda *_: b"", Limits(memory_bytes=32 << 20, deadline_ms=60_000))
    with pytest.raises(GuestError, match="decode each block more than 32 times"):
        inst.call("Jpeg.Decode", msgpack.packb({"data": eob_scan_jpeg(33), "scale": 8}))
