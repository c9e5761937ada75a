"""The echo actor end to end in the waPC host binding: exact round-trips, and hostile payloads.

The echo actor is the reference user of the SDK's HttpRequest decoder and JSON writer, so these tests
double as the SDK's tests: whatever bytes arrive, the guest must answer or report an error, never trap.
"""

from __future__ import annotations

import base64
import json
import os
import random
import struct
from typing import Any

import msgpack
import pytest
from actor_support import build_all, compiled, shared_runtime

from waft.claims import inspect_actor
from waft.host.wapc import ActorTrap, GuestError, HostCallError, Limits, WapcInstance, WapcModule

OP = "HttpServer.HandleRequest"


@pytest.fixture()
def echo_module() -> WapcModule:
    return compiled("echo")


def no_host_calls(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
    raise HostCallError(f"unexpected host call {namespace} {operation}")


@pytest.fixture()
def echo(echo_module: WapcModule) -> WapcInstance:
    return echo_module.instantiate(no_host_calls, Limits(memory_bytes=64 * 1024 * 1024, deadline_ms=5000))


def request(method: str = "GET", path: str = "/", query: str = "", header: dict[str, list[str]] | None = None,
            body: bytes = b"", *, otp_style: bool = False) -> bytes:
    """An HttpRequest as the httpserver provider sends it; otp_style writes bytes as msgpack str."""
    obj = {"method": method, "path": path, "queryString": query, "header": header or {}, "body": body}
    return msgpack.packb(obj, use_bin_type=not otp_style)


def decode_response(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(HttpResponse, the JSON echo in its body)."""
    resp = msgpack.unpackb(raw, raw=False)
    assert set(resp) == {"statusCode", "header", "body"}
    assert isinstance(resp["body"], bytes)
    return resp, json.loads(resp["body"])


def assert_echoes(echo: WapcInstance, method: str, path: str, query: str, header: dict[str, list[str]],
                  body: bytes, *, otp_style: bool = False) -> None:
    resp, doc = decode_response(echo.call(OP, request(method, path, query, header, body, otp_style=otp_style)))
    assert resp["statusCode"] == 200
    assert resp["header"] == {"content-type": ["application/json"]}
    assert doc == {"method": method, "path": path, "queryString": query, "header": header,
                   "body": base64.b64encode(body).decode(), "bodyLength": len(body)}
    assert base64.b64decode(doc["body"]) == body


RNG_BODY = random.Random(7).randbytes(4099) + b"\x00" * 17 + b"\x00\xff\x00"


@pytest.mark.parametrize("body", [b"", b"x", b"ab", b"abc", RNG_BODY, os.urandom(1024 * 1024)],
                         ids=["empty", "1B", "2B", "3B", "random-with-NULs", "1MiB"])
def test_body_round_trips_exactly(echo: WapcInstance, body: bytes) -> None:
    assert_echoes(echo, "PUT", "/upload/x", "a=1&b=2", {"content-type": ["application/octet-stream"]}, body)


def test_method_path_query_and_multi_valued_headers(echo: WapcInstance) -> None:
    header = {"accept": ["text/html", "application/json;q=0.9"], "x-empty": [], "x-one": [""],
              "set-cookie": ["a=1", "b=2", "c=3"], "x-ünïcødé": ["välue ✓", "🐱"]}
    assert_echoes(echo, "POST", "/effnetlite0/matches", "k=5&name=%20x&é=1", header, b"{}")


def test_json_escaping_of_awkward_text(echo: WapcInstance) -> None:
    awkward = 'quote" backslash\\ slash/ nl\n cr\r tab\t bell\x07 nul\x00 del\x7f \u2028 end'
    assert_echoes(echo, "GET", "/" + awkward, awkward, {awkward: [awkward, "\x01\x1f"]}, b"")


def test_otp_style_str_body_and_headers(echo: WapcInstance) -> None:
    """wasmCloud OTP hosts write byte fields as msgpack str; the SDK must take str for bytes."""
    body = bytes(range(256)) * 3  # not valid UTF-8: str here is just a byte container
    assert_echoes(echo, "POST", "/otp", "q", {"h": ["v1", "v2"]}, body, otp_style=True)


def test_invalid_utf8_in_text_fields_becomes_replacement_chars(echo: WapcInstance) -> None:
    raw = msgpack.packb({"method": b"G\xffT", "path": b"/\xc3", "queryString": b"", "header": {},
                         "body": b""}, use_bin_type=False)
    _, doc = decode_response(echo.call(OP, raw))
    assert doc["method"] == "G\ufffdT"
    assert doc["path"] == "/\ufffd"


def test_missing_fields_default_and_unknown_fields_are_skipped(echo: WapcInstance) -> None:
    raw = msgpack.packb({"path": "/p", "extra": [1, {"deep": [None, True, 1.5, -7, 2**63]}],
                         "ext": msgpack.ExtType(5, b"abcdefgh"), "body": None})
    _, doc = decode_response(echo.call(OP, raw))
    assert doc == {"method": "", "path": "/p", "queryString": "", "header": {}, "body": "", "bodyLength": 0}


def test_single_string_header_value_is_taken_as_a_list(echo: WapcInstance) -> None:
    _, doc = decode_response(echo.call(OP, msgpack.packb({"header": {"a": "b"}})))
    assert doc["header"] == {"a": ["b"]}


def test_health_request(echo: WapcInstance) -> None:
    answer = msgpack.unpackb(echo.call("Actor.HealthRequest", msgpack.packb({})))
    assert answer == {"healthy": True, "message": "ok"}


def test_unknown_operation_is_a_guest_error(echo: WapcInstance) -> None:
    with pytest.raises(GuestError, match=r"^No handler registered for function Foo\.Bar$"):
        echo.call("Foo.Bar", b"")
    assert_echoes(echo, "GET", "/", "", {}, b"still works")


def _u32(n: int) -> bytes:
    return struct.pack(">I", n)


MALFORMED = {
    "empty": b"",
    "not-a-map": msgpack.packb([1, 2, 3]),
    "nil": b"\xc0",
    "reserved-marker": b"\xc1",
    "method-int": msgpack.packb({"method": 5}),
    "path-list": msgpack.packb({"path": ["/"]}),
    "header-list": msgpack.packb({"header": ["a", "b"]}),
    "header-value-int": msgpack.packb({"header": {"a": [1]}}),
    "header-value-nil": msgpack.packb({"header": {"a": None}}),
    "header-name-int": msgpack.packb({"header": {1: ["x"]}}),
    "body-int": msgpack.packb({"body": 12}),
    "body-map": msgpack.packb({"body": {}}),
    "key-int": msgpack.packb({1: "x"}),
    "trailing-bytes": msgpack.packb({"path": "/"}) + b"\x00",
    "map32-huge-count": b"\xdf" + _u32(0xFFFFFFFF),
    "map16-count-past-end": b"\xde\xff\xff" + b"\xa1a\xa1b",
    "str32-huge-key": b"\x81\xdb" + _u32(0xFFFFFFFF) + b"path",
    "str32-huge-value": b"\x81\xa4path\xdb" + _u32(0xFFFFFFF0) + b"/",
    "bin32-huge-body": b"\x81\xa4body\xc6" + _u32(0x7FFFFFFF) + b"abc",
    "array32-huge-values": b"\x81\xa6header\x81\xa1a\xdd" + _u32(0xFFFFFFFF),
    "map32-huge-headers": b"\x81\xa6header\xdf" + _u32(0x10000000) + b"\xa1a\x90",
    "ext32-huge-unknown": b"\x81\xa1x\xc9" + _u32(0xFFFFFFFF) + b"\x01",
    "truncated-float": b"\x81\xa1x\xcb\x00\x00",
    "truncated-int": b"\x81\xa1x\xcf\x00",
    "deep-nesting": b"\x81\xa1x" + b"\x91" * 10_000 + b"\xc0",
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_payloads_are_guest_errors(echo: WapcInstance, payload: bytes) -> None:
    with pytest.raises(GuestError, match=r"^invalid HttpRequest: "):
        echo.call(OP, payload)
    assert_echoes(echo, "GET", "/after", "", {"a": ["b"]}, b"ok")


def test_every_truncation_of_a_request_is_rejected_cleanly(echo: WapcInstance) -> None:
    full = request("POST", "/t", "q=1", {"a": ["1", "2"], "b": ["3"]}, b"\x00body\xff")
    for cut in range(len(full)):
        with pytest.raises(GuestError):
            echo.call(OP, full[:cut])
    decode_response(echo.call(OP, full))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        kind = rng.randrange(5)
        pos = rng.randrange(len(buf)) if buf else 0
        if kind == 0 and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif kind == 1 and buf:
            buf[pos] = rng.choice([0x00, 0x7F, 0xC0, 0xC1, 0xC4, 0xC6, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xFF])
        elif kind == 2:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif kind == 3 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        else:
            buf = buf[:pos]
    return bytes(buf)


def test_fuzz_never_traps(echo_module: WapcModule) -> None:
    """500 mutated and random payloads on ONE instance: each is answered or refused, none traps."""
    instance = echo_module.instantiate(no_host_calls, Limits(memory_bytes=64 * 1024 * 1024, deadline_ms=5000))
    rng = random.Random(20240605)
    seeds = [request("GET", "/", "", {}, b""),
             request("PUT", "/m/preprocess", "k=3", {"content-type": ["image/png"], "x": ["1", "2"]},
                     rng.randbytes(300)),
             request("POST", "/x", "", {"a": ["b"]}, b"body", otp_style=True)]
    outcomes = {"ok": 0, "error": 0}
    for i in range(500):
        payload = rng.randbytes(rng.randint(0, 64)) if i % 5 == 0 else _mutate(rng, rng.choice(seeds))
        try:
            resp, _ = decode_response(instance.call(OP, payload))
            assert resp["statusCode"] == 200
            outcomes["ok"] += 1
        except GuestError:
            outcomes["error"] += 1
        except ActorTrap as exc:  # pragma: no cover - the failure this test exists to catch
            pytest.fail(f"payload {payload.hex()} trapped the guest: {exc}")
    assert outcomes["error"] > 100 and outcomes["ok"] > 0, outcomes
    assert_echoes(instance, "GET", "/after-fuzz", "", {}, b"alive")


def test_no_memory_leak_across_calls(echo: WapcInstance) -> None:
    """Requests and errors free everything: linear memory stops growing after warm-up.

    The warm-up runs the same mix first, because the allocator's free lists take a few rounds to
    settle (memory grows by a page or two, then stays flat: measured over 2000 rounds).
    """
    good = request("POST", "/p", "", {"a": ["b"] * 10}, os.urandom(256 * 1024))

    def one_round() -> None:
        echo.call(OP, good)
        with pytest.raises(GuestError):
            echo.call(OP, MALFORMED["header-value-int"])
        with pytest.raises(GuestError):
            echo.call("Nope", b"x" * 1000)

    for _ in range(30):
        one_round()
    before = echo._memory.size(echo.store)
    for _ in range(200):
        one_round()
    assert echo._memory.size(echo.store) == before


def test_signed_copy_runs_and_carries_claims() -> None:
    signed = build_all()["echo"][1]
    claims = inspect_actor(signed.read_bytes())
    assert claims.name == "echo"
    assert set(claims.caps) == {"wasmcloud:httpserver", "wasmcloud:builtin:logging"}
    assert claims.subject.startswith("M") and claims.issuer.startswith("A")
    instance = shared_runtime().compile(signed.read_bytes()).instantiate(no_host_calls)
    assert_echoes(instance, "GET", "/signed", "", {}, b"x")
