"""HttpRequest / HttpResponse of `wasmcloud:httpserver` (§7.1), and the JSON error bodies we answer with.

Decoding is lenient where wasmCloud 0.x actors differ: the 0.x host wrote byte fields as msgpack str,
older actors send header values as a single string, and a missing statusCode means 200 (the smithy
model's custom default). Anything else wrong with a response is the actor's bug and becomes a 500 that
says so, never an empty body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from waft.lattice.codec import pack

#: Headers the HTTP server computes itself; an actor's copy would be wrong after re-framing.
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}


class BadResponse(ValueError):
    """The actor answered something that is not an HttpResponse."""


@dataclass
class HttpResponse:
    status: int = 200
    header: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""


def encode_request(method: str, path: str, query: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """Header names are lowercased, as hyper hands them to wasmCloud's provider; values keep their order."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return pack({"method": method.upper(), "path": path, "queryString": query, "header": grouped, "body": body})


def decode_response(data: bytes) -> HttpResponse:
    try:
        wire = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise BadResponse(f"HttpResponse is not msgpack: {exc}") from None
    if not isinstance(wire, dict):
        raise BadResponse(f"HttpResponse must be a map, got {type(wire).__name__}")
    status = wire.get("statusCode", wire.get("status", 200))  # `status`: pre-wasmbus actors
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise BadResponse(f"invalid status code {status!r}")
    body = wire.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        raise BadResponse(f"HttpResponse body must be bytes or a string, got {type(body).__name__}")
    return HttpResponse(status, _headers(wire.get("header")), body)


def _headers(raw: object) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadResponse("HttpResponse header must be a map of string to list of strings")
    headers: dict[str, list[str]] = {}
    for name, values in raw.items():
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(values, str | bytes):
            values = [values]
        if not isinstance(name, str) or not isinstance(values, list):
            raise BadResponse(f"invalid header {name!r}: expected a list of strings")
        texts = [v.decode("latin-1") if isinstance(v, bytes) else v for v in values]
        if not all(isinstance(v, str) for v in texts) or any("\r" in v or "\n" in v for v in [name, *texts]):
            raise BadResponse(f"invalid header {name!r}: values must be strings without line breaks")
        headers[name] = texts
    return headers


def error_body(error: str, detail: str) -> bytes:
    """The one error shape of Waft (design: Conventions): `{"error": ..., "detail": ...}`."""
    return json.dumps({"error": error, "detail": detail}).encode()
