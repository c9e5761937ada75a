"""msgpack as wasmCloud 0.x speaks it.

The Elixir host wrote every binary as msgpack *str*, even arbitrary bytes, so a reader must accept
str where it expects bytes (protocol gotcha 1). Decoding str with `surrogateescape` keeps the exact
bytes recoverable: `as_bytes` turns such a str back into the bytes that were sent.
"""

from __future__ import annotations

from typing import Any

import msgpack

from waft.errors import WaftError


class DecodeError(WaftError, ValueError):
    """Bytes that are not the msgpack message they claim to be."""


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes, *, what: str = "message") -> Any:
    try:
        return msgpack.unpackb(data, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise DecodeError(f"malformed msgpack {what}: {exc}") from None


def unpack_map(data: bytes, *, what: str) -> dict[str, Any]:
    value = unpack(data, what=what)
    if not isinstance(value, dict):
        raise DecodeError(f"malformed msgpack {what}: expected a map, got {type(value).__name__}")
    return value


def as_bytes(value: Any, *, field: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, list) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return bytes(value)  # some JSON-to-msgpack encoders send blobs as arrays of ints
    raise DecodeError(f"field {field!r} must be bytes, got {type(value).__name__}")


def as_str(value: Any, *, field: str, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise DecodeError(f"field {field!r} must be a string, got {type(value).__name__}")
