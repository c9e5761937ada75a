"""The `wasmcloud:httpserver` contract: HttpRequest / HttpResponse (§7.1), the JSON error body we answer
with, and the access record the httpserver provider publishes for each request. The one Python source
of this wire, for the provider, the dashboard and the tests.

Decoding is lenient where wasmCloud 0.x actors differ: the 0.x host wrote byte fields as msgpack str,
older actors send header values as a single string, and a missing statusCode means 200 (the smithy
model's custom default). Anything else wrong with a response is the actor's bug and becomes a 500 that
says so, never an empty body.

The access record (Waft; wasmCloud had none) is one JSON object per answered request,
`{"method","path","status","bytes","ms","model"}`, on `subjects.access_log(prefix)`; the dashboard
folds them into its inference metrics.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from waft.errors import WaftError
from waft.lattice.codec import pack

#: Headers the HTTP server computes itself; an actor's copy would be wrong after re-framing.
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}


class BadResponse(WaftError, ValueError):
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


# ---------------------------------------------------------------------------------------- access record

#: Path heads of the API actor that name no model (`/models`, `/healthz`, KServe's `/v2/health/…`).
NOT_MODELS = frozenset({"models", "healthz", "v2", "metrics", "favicon.ico"})


#: Records one access message may carry: a reader's bound (a batch is a burst of at most this many requests).
MAX_ACCESS_BATCH = 10_000


class BadAccessRecord(WaftError, ValueError):
    """A message on the access subject that is not an access record."""


def model_of(path: str) -> str:
    """`/effnetlite0/matches?k=3` -> `effnetlite0`; `/v2/models/m/infer` -> `m`; `/healthz` -> ``."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if len(parts) >= 3 and parts[0] == "v2" and parts[1] == "models":
        return parts[2]
    if not parts or parts[0] in NOT_MODELS:
        return ""
    return parts[0]


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadAccessRecord(f"access record is not JSON: {exc}") from None


@dataclass(frozen=True)
class AccessRecord:
    """One answered request, as the dashboard's metrics need it (no client address: it leaves the host)."""

    method: str
    path: str
    status: int
    bytes: int = 0
    ms: float = 0.0
    model: str = ""

    @classmethod
    def of(cls, method: str, path: str, status: int, size: int, ms: float) -> AccessRecord:
        return cls(method, path, status, size, round(ms, 3), model_of(path))

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> AccessRecord:
        return cls.from_wire(_json(data))

    @staticmethod
    def encode_many(records: Iterable[AccessRecord]) -> bytes:
        """A batch as one message (a JSON array): one NATS message per request cost the provider and the
        server ~70 us of CPU per request of ~950 on the echo path (`docs/performance.md`)."""
        return json.dumps([asdict(record) for record in records]).encode()

    @classmethod
    def decode_many(cls, data: bytes) -> tuple[list[AccessRecord], int]:
        """A message of one record (a JSON object) or a batch (an array of at most `MAX_ACCESS_BATCH`): the
        records that check out, and how many did not. Raises BadAccessRecord when the message is neither."""
        wire = _json(data)
        if not isinstance(wire, list):
            return [cls.from_wire(wire)], 0
        if len(wire) > MAX_ACCESS_BATCH:
            raise BadAccessRecord(f"access batch of {len(wire)} records; at most {MAX_ACCESS_BATCH} in one message")
        records: list[AccessRecord] = []
        for item in wire:
            try:
                records.append(cls.from_wire(item))
            except BadAccessRecord:
                continue
        return records, len(wire) - len(records)

    @classmethod
    def from_wire(cls, wire: Any) -> AccessRecord:
        """Checked, since anyone on the lattice can publish here: bounded strings, a real status and time."""
        try:
            record = cls(str(wire.get("method", "GET"))[:16].upper(), str(wire["path"]), int(wire["status"]),
                         int(wire.get("bytes", 0) or 0), float(wire.get("ms", 0.0)),
                         str(wire.get("model") or "")[:128])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BadAccessRecord(f"not an access record: {exc}") from None
        if not math.isfinite(record.ms) or record.ms < 0 or not 100 <= record.status <= 599:
            raise BadAccessRecord(f"access record out of range: status {record.status}, {record.ms} ms")
        return record
