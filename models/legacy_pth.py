"""Read a PyTorch state dict into numpy arrays without torch.

Why: the EfficientNet-Lite weights ship as a `.pth` written by `torch.save`, and Waft must not make
its users install torch (hundreds of MB) just to convert one file at build time. A state dict is
only an OrderedDict of tensors, so a restricted unpickler that knows the handful of globals torch
writes is enough. The restriction is also the safety story: `torch.load` on a hostile file runs
arbitrary code; this reader refuses any global outside its allow-list.

Two layouts exist:
- legacy (torch < 1.6, and `_use_new_zipfile_serialization=False`): five pickles in a row (magic
  number, protocol version, sys info, the object, the list of storage keys), then each storage as
  a little-endian int64 element count followed by its raw bytes, in key-list order;
- zip (torch >= 1.6): `<root>/data.pkl` plus one file `<root>/data/<key>` per storage.
Both refer to storages through pickle persistent ids `('storage', StorageType, key, location, numel,
...)`, and tensors are `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage class name -> numpy dtype (little-endian, as every file we accept is).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class PthFormatError(ValueError):
    """The file is not a torch state dict this reader can trust: truncated, corrupt or foreign."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    """A tensor whose storage bytes come later in a legacy file; materialised once they are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _rebuild_tensor_v2(storage: _Storage, storage_offset: int, size: Any, stride: Any, *_rest: Any) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise PthFormatError("tensor refers to something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: _TensorRef, *_rest: Any) -> _TensorRef:
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals a tensor state dict needs; records every storage it meets."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise PthFormatError(f"refusing to load global {module}.{name}: not part of a tensor state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) < 5 or _text(pid[0]) != "storage":
            raise PthFormatError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], _text(pid[2]), pid[3], pid[4]
        if len(pid) > 5 and pid[5] is not None:
            raise PthFormatError("storage views (pre-1.0 torch files) are not supported")
        if not isinstance(storage_type, _StorageType):
            raise PthFormatError(f"unsupported storage type {storage_type!r:.80}")
        if not isinstance(numel, int) or numel < 0:
            raise PthFormatError(f"storage {key} has an invalid element count {numel!r:.40}")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif known.dtype != storage_type.dtype:
            raise PthFormatError(f"storage {key} is used with two dtypes")
        return known


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _load_pickle(unpickler: pickle.Unpickler, what: str) -> Any:
    try:
        return unpickler.load()
    except PthFormatError:
        raise
    except EOFError:
        raise PthFormatError(f"truncated .pth: the file ends inside the {what}") from None
    except Exception as exc:  # pickle raises many types on garbage: all mean the same to the caller
        raise PthFormatError(f"malformed .pth: cannot read the {what} ({type(exc).__name__}: {exc})") from None


def load_state_dict(source: bytes | IO[bytes]) -> dict[str, np.ndarray]:
    """Parse a torch-saved state dict (legacy or zip layout) into name -> numpy array (a copy).

    Raises PthFormatError with a one-line reason for anything that is not a complete, plain state dict.
    """
    data = source if isinstance(source, bytes) else source.read()
    if data[:4] == b"PK\x03\x04":
        return _load_zip(data)
    return _load_legacy(data)


def _load_legacy(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    if not data:
        raise PthFormatError("empty .pth file")
    plain = _Unpickler(stream)  # the header pickles hold only ints and dicts; same allow-list
    magic = _load_pickle(plain, "magic number")
    if magic != MAGIC_NUMBER:
        raise PthFormatError("not a torch file: bad magic number")
    version = _load_pickle(plain, "protocol version")
    if version != PROTOCOL_VERSION:
        raise PthFormatError(f"unsupported torch protocol version {version!r:.40}")
    sys_info = _load_pickle(plain, "system info")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise PthFormatError("only little-endian torch files are supported")
    unpickler = _Unpickler(stream)
    obj = _load_pickle(unpickler, "state dict")
    keys = _load_pickle(plain, "storage key list")
    if not isinstance(keys, list) or set(map(_text, keys)) != set(unpickler.storages):
        raise PthFormatError("malformed .pth: the storage key list does not match the tensors")
    for raw_key in keys:
        storage = unpickler.storages[_text(raw_key)]
        header = stream.read(8)
        if len(header) < 8:
            raise PthFormatError(f"truncated .pth: the file ends before storage {storage.key}")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise PthFormatError(f"malformed .pth: storage {storage.key} holds {numel} elements, "
                                 f"the tensors expect {storage.numel}")
        storage.data = _read_array(stream.read(numel * storage.dtype.itemsize), storage)
    if stream.read(1):
        raise PthFormatError("malformed .pth: trailing bytes after the last storage")
    return _materialise(obj)


def _load_zip(data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise PthFormatError("zip .pth without data.pkl")
        root = pkl[: -len("data.pkl")]
        unpickler = _Unpickler(io.BytesIO(archive.read(pkl)))
        obj = _load_pickle(unpickler, "state dict")
        for storage in unpickler.storages.values():
            member = f"{root}data/{storage.key}"
            if member not in names:
                raise PthFormatError(f"truncated .pth: storage {storage.key} is missing from the archive")
            storage.data = _read_array(archive.read(member), storage)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PthFormatError(f"malformed zip .pth: {exc}") from None
    return _materialise(obj)


def _read_array(raw: bytes, storage: _Storage) -> np.ndarray:
    expected = storage.numel * storage.dtype.itemsize
    if len(raw) != expected:
        raise PthFormatError(f"truncated .pth: storage {storage.key} needs {expected} bytes, found {len(raw)}")
    return np.frombuffer(raw, dtype=storage.dtype)


def _materialise(obj: Any) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise PthFormatError(f"the file holds a {type(obj).__name__}, not a state dict")
    out: dict[str, np.ndarray] = {}
    for name, ref in obj.items():
        if not isinstance(ref, _TensorRef):
            raise PthFormatError(f"entry {name!r} is not a tensor")
        out[str(name)] = _tensor(ref)
    return out


def _tensor(ref: _TensorRef) -> np.ndarray:
    flat = ref.storage.data
    assert flat is not None
    if len(ref.size) != len(ref.stride) or any(s < 0 for s in (*ref.size, *ref.stride)) or ref.offset < 0:
        raise PthFormatError(f"tensor over storage {ref.storage.key} has an invalid shape or stride")
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise PthFormatError(f"tensor over storage {ref.storage.key} reaches past its end")
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=tuple(s * flat.itemsize for s in ref.stride), writeable=False)
    return np.array(view, copy=True)
