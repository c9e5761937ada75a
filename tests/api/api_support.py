"""Shared setup of the API and post-processor tests: built actors in the waPC binding, a scripted
host, and the float formatting reference.

The actors run in Waft's waPC binding (no NATS), like the other actor tests; the API actor's host calls
(pre-processor, mlinference, post-processor) are answered by `FakeHost`, which records every call so
tests can assert what the actor sent, and replays canned msgpack answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

ACTORS_TESTS = Path(__file__).resolve().parents[1] / "actors"
if str(ACTORS_TESTS) not in sys.path:
    sys.path.insert(0, str(ACTORS_TESTS))

from actor_support import compiled  # noqa: E402

from waft.host.wapc import HostCallError, Limits, WapcInstance  # noqa: E402

POSTPROCESS = "Imagenet.Postprocess"
HTTP = "HttpServer.HandleRequest"
MLINFERENCE = "wasmcloud:mlinference"
PREPROCESSOR = "waft/preprocessor"
POSTPROCESSOR = "waft/postprocessor"
LOGGING = "wasmcloud:builtin:logging"


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def shortest_f32(x: float) -> str:
    """The shortest `%.{p}g` text that parses back to the same float32 (the original printed Rust's
    f32 Display / ryu, the shortest round-trip form). Note `repr(float(np.float32(x)))` is the shortest
    form of the *double* and usually longer (0.7099999785423279 for 0.71f)."""
    f = np.float32(x)
    with np.errstate(over="ignore"):  # short forms of numbers near FLT_MAX round past it: not a match
        for precision in range(1, 10):
            text = f"{float(f):.{precision}g}"  # C's %.*g
            if np.float32(text) == f:
                return text
    raise AssertionError(f"no round-trip form for {x!r}")


def json_number_texts(body: bytes) -> list[str]:
    """Every number in a JSON document as its literal text (json's parse_float/parse_int hooks)."""
    texts: list[str] = []

    def keep(text: str) -> str:
        texts.append(text)
        return text

    json.loads(body, parse_float=keep, parse_int=keep)
    return texts


# --------------------------------------------------------------------------------------- post-processor

def new_postprocessor() -> WapcInstance:
    def no_calls(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        raise HostCallError(f"the post-processor claims nothing, yet called {namespace} {operation}")

    return compiled("postprocessor").instantiate(no_calls, Limits(memory_bytes=128 << 20))


def tensor_wire(array: np.ndarray, *, dims: list[int] | None = None, flags: int = 0,
                value_type: str | None = None) -> dict[str, Any]:
    names = {np.dtype(np.float32): "ValueF32", np.dtype(np.float64): "ValueF64", np.dtype(np.float16): "ValueF16",
             np.dtype(np.uint8): "ValueU8", np.dtype(np.int8): "ValueI8"}
    data = array.astype(array.dtype.newbyteorder(">" if flags & 2 else "<")).tobytes()
    return {"dimensions": list(array.shape) if dims is None else dims,
            "valueTypes": [value_type or names[array.dtype.newbyteorder("=")]], "flags": flags, "data": data}


def postprocess(inst: WapcInstance, request: dict[str, Any]) -> dict[str, Any]:
    return unpack(inst.call(POSTPROCESS, pack(request)))


# ------------------------------------------------------------------------------------------- API actor

Handler = Callable[[bytes], bytes]


@dataclass
class Call:
    binding: str
    namespace: str
    operation: str
    payload: bytes

    @property
    def request(self) -> Any:
        return unpack(self.payload)


@dataclass
class FakeHost:
    """Plays the pre-processor, mlinference and post-processor for the API actor.

    `answers[(namespace, operation)]` is a callable payload -> answer bytes (it may raise
    HostCallError to simulate the host's errors); every call is recorded in `calls`, logging aside.
    """

    answers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def __call__(self, binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        if namespace == LOGGING:
            self.logs.append(unpack(payload))
            return b""
        self.calls.append(Call(binding, namespace, operation, payload))
        handler = self.answers.get((namespace, operation))
        if handler is None:
            raise HostCallError(f"unexpected host call {binding!r} {namespace} {operation}")
        return handler(payload)

    def on(self, namespace: str, operation: str, handler: Handler | bytes | dict[str, Any]) -> None:
        if isinstance(handler, bytes | dict):
            answer = handler if isinstance(handler, bytes) else pack(handler)
            self.answers[(namespace, operation)] = lambda payload: answer
        else:
            self.answers[(namespace, operation)] = handler

    def ops(self) -> list[tuple[str, str, str]]:
        return [(c.binding, c.namespace, c.operation) for c in self.calls]


def new_api(host: FakeHost) -> WapcInstance:
    return compiled("api").instantiate(host, Limits(memory_bytes=256 << 20))


@dataclass
class Response:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        values = {k.lower(): v for k, v in self.headers.items()}.get("content-type", [""])
        return values[0]


def http(inst: WapcInstance, method: str, path: str, body: bytes = b"", query: str = "",
         headers: dict[str, list[str]] | None = None) -> Response:
    request = {"method": method, "path": path, "queryString": query, "header": headers or {}, "body": body}
    reply = unpack(inst.call(HTTP, pack(request)))
    return Response(reply["statusCode"], reply.get("header") or {}, bytes(reply.get("body") or b""))
