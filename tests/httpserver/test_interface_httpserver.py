"""The httpserver contract: HttpRequest / HttpResponse codecs (the lenient reading a 0.x actor needs, and the
checks that yield a 500) and the access record the dashboard reads."""

from __future__ import annotations

import msgpack
import pytest

from waft.interfaces.httpserver import (
    AccessRecord,
    BadAccessRecord,
    BadResponse,
    decode_response,
    encode_request,
    model_of,
)
from waft.lattice import subjects


def test_request_groups_headers_lowercased_in_order():
    raw = encode_request("get", "/p", "a=1", [("X-A", "1"), ("Accept", "*/*"), ("x-a", "2")], b"\0\xff")
    wire = msgpack.unpackb(raw, raw=False)
    assert wire == {"method": "GET", "path": "/p", "queryString": "a=1",
                    "header": {"x-a": ["1", "2"], "accept": ["*/*"]}, "body": b"\0\xff"}
    assert isinstance(msgpack.unpackb(raw, raw=True)[b"body"], bytes)  # bin, not str


def test_response_accepts_str_or_bin_body_and_single_header_values():
    r = decode_response(msgpack.packb({"statusCode": 201, "header": {"X": "one", "Y": ["a", "b"]}, "body": "héllo"}))
    assert (r.status, r.header, r.body) == (201, {"X": ["one"], "Y": ["a", "b"]}, "héllo".encode())
    r = decode_response(msgpack.packb({"statusCode": 200, "body": b"\0\1"}, use_bin_type=True))
    assert r.body == b"\0\1" and r.header == {}
    assert decode_response(msgpack.packb({})).status == 200  # smithy default
    assert decode_response(msgpack.packb({"status": 404})).status == 404  # pre-wasmbus actors


@pytest.mark.parametrize(("wire", "message"), [
    (b"\xc1", "not msgpack"),
    (msgpack.packb([1, 2]), "must be a map"),
    (msgpack.packb({"statusCode": 99}), "invalid status code 99"),
    (msgpack.packb({"statusCode": 600}), "invalid status code"),
    (msgpack.packb({"statusCode": "200"}), "invalid status code"),
    (msgpack.packb({"statusCode": True}), "invalid status code"),
    (msgpack.packb({"body": 5}), "body must be bytes"),
    (msgpack.packb({"header": ["x"]}), "header must be a map"),
    (msgpack.packb({"header": {"X": ["a\r\nSet-Cookie: evil"]}}), "without line breaks"),
    (msgpack.packb({"header": {"X": [1]}}), "invalid header"),
])
def test_bad_responses_are_refused(wire, message):
    with pytest.raises(BadResponse, match=message):
        decode_response(wire)


def test_access_record_round_trips_and_refuses_what_is_not_one():
    record = AccessRecord.of("POST", "/effnetlite0/matches?k=3", 200, 321, 12.34567)
    assert record == AccessRecord("POST", "/effnetlite0/matches?k=3", 200, 321, 12.346, "effnetlite0")
    assert AccessRecord.decode(record.encode()) == record
    assert AccessRecord.from_wire({"path": "/m", "status": 500, "method": "get"}) == AccessRecord("GET", "/m", 500)
    for bad in (b"{not json", b"[]", b'{"path": "/x"}', b'{"path": "/x", "status": 99}',
                b'{"path": "/x", "status": 200, "ms": "nan"}', b'{"path": "/x", "status": 200, "ms": -1}'):
        with pytest.raises(BadAccessRecord):
            AccessRecord.decode(bad)
    assert model_of("/v2/models/resnet/infer") == "resnet" and model_of("/healthz") == ""
    assert subjects.access_log("p") == "waft.access.p"
