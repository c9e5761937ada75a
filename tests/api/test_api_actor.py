"""The API actor in the waPC binding, with a scripted host playing the other parts.

`FakeHost` answers the pre-processor (`waft/preprocessor`), mlinference (`wasmcloud:mlinference` on
link `default`) and, unless a test scripts it, the post-processor with the *real* post-processor actor.
Each test checks what the API sent (namespaces, operations, payloads) and what it answered (status,
headers, JSON body), including every MlError variant and host-call failure.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import msgpack
import numpy as np
import pytest
from api_support import (
    LOGGING,
    MLINFERENCE,
    POSTPROCESS,
    POSTPROCESSOR,
    PREPROCESSOR,
    FakeHost,
    Response,
    http,
    json_number_texts,
    new_api,
    new_postprocessor,
    pack,
    shortest_f32,
    unpack,
)

from waft.host.wapc import GuestError, HostCallError, WapcInstance

PREDICT = "MlInference.Predict"
METADATA = "MlInference.GetMetadata"
LIST = "MlInference.ListModels"
CONVERT = "MlPreprocessing.Convert"
SUCCESS = {"success": None}

INPUT_SPEC = {"size": [224, 224], "layout": "NCHW", "resize": "shorter_side", "resize_to": 256, "crop": "center",
              "mean": [127, 127, 127], "std": [128, 128, 128], "dtype": "f32", "color": "RGB", "resample": "bilinear"}
LABELS = [f"n{i:08d} class {i}, synonym" for i in range(1000)]
EFFNET_META = {"model_name": "efficientnet-lite0", "graph_encoding": "onnx", "execution_target": "cpu",
               "tensor_type": "F32", "tensor_dimensions_in": [1, 3, 224, 224], "tensor_dimensions_out": [1, 1000],
               "input_spec": INPUT_SPEC, "outputs_probabilities": False, "labels": LABELS, "input_name": "input",
               "output_name": "logits"}
IDENTITY_META = {"model_name": "identity_input_output", "graph_encoding": "onnx", "execution_target": "cpu",
                 "tensor_type": "F32", "tensor_dimensions_in": [1, 4], "tensor_dimensions_out": [1, 4],
                 "input_spec": None, "outputs_probabilities": False, "labels": None, "input_name": "0",
                 "output_name": "1"}
METAS = {"effnetlite0": EFFNET_META, "identity": IDENTITY_META}
IMAGE = b"\xff\xd8\xff\xe0 pretend this is a JPEG"
PIXELS = np.linspace(-1, 1, 3 * 224 * 224, dtype=np.float32).reshape(1, 3, 224, 224)
LOGITS = (np.random.default_rng(7).normal(size=(1, 1000)) * 4).astype(np.float32)


def f32_tensor(array: np.ndarray) -> dict[str, Any]:
    return {"dimensions": list(array.shape), "valueTypes": ["ValueF32"], "flags": 0,
            "data": array.astype("<f4").tobytes()}


def unknown_model(model: str) -> dict[str, Any]:
    return {"error": {"contextNotFoundError": f"unknown model {model!r}; this actor's link serves: effnetlite0, "
                                              "identity"}}


def get_metadata(payload: bytes) -> bytes:
    model = unpack(payload)["model"]
    return pack(METAS[model] if model in METAS else unknown_model(model))


def predict(payload: bytes) -> bytes:
    """identity echoes, effnetlite0 answers LOGITS for the PIXELS tensor, anything else is unknown."""
    request = unpack(payload)
    model = request["model"]
    if model == "identity":
        return pack({"result": SUCCESS, "tensor": request["tensor"]})
    if model == "effnetlite0":
        return pack({"result": SUCCESS, "tensor": f32_tensor(LOGITS)})
    return pack({"result": unknown_model(model), "tensor": {"dimensions": [], "valueTypes": ["ValueF32"],
                                                            "flags": 0, "data": b""}})


def convert(payload: bytes) -> bytes:
    return pack({"result": SUCCESS, "tensor": f32_tensor(PIXELS)})


@pytest.fixture(scope="module")
def postprocessor() -> WapcInstance:
    return new_postprocessor()


@pytest.fixture()
def host(postprocessor: WapcInstance) -> FakeHost:
    h = FakeHost()
    h.on(MLINFERENCE, METADATA, get_metadata)
    h.on(MLINFERENCE, PREDICT, predict)
    h.on(MLINFERENCE, LIST, {"models": [
        {"name": "effnetlite0", "bindleId": "efficientnet-lite0/0.1.0", "status": "ready", "graphEncoding": "onnx",
         "runsOn": "cpu", "inputs": [{"name": "input", "valueType": "ValueF32", "dimensions": [1, 3, 224, 224]}],
         "loadSeconds": 0.25},
        {"name": "identity", "bindleId": "identity_model/0.2.0", "status": "ready", "graphEncoding": "onnx"}]})
    h.on(PREPROCESSOR, CONVERT, convert)
    h.on(POSTPROCESSOR, POSTPROCESS, lambda payload: postprocessor.call(POSTPROCESS, payload))
    return h


@pytest.fixture()
def api(host: FakeHost) -> WapcInstance:
    return new_api(host)  # a fresh instance per test: an empty metadata cache


def json_tensor(values: list[float], dims: list[int] | None = None, **extra: Any) -> bytes:
    data = list(struct.pack(f"<{len(values)}f", *values))
    return json.dumps({"dimensions": dims or [1, len(values)], "valueTypes": ["ValueF32"], "flags": 0, "data": data,
                       **extra}).encode()


def assert_error(r: Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status == status, (r.status, r.body)
    assert r.content_type == "application/json"
    body = r.json()
    if "code" in body:  # /v2: the Open Inference Protocol's {"error": message}, the category in `code`
        assert set(body) == {"error", "code"} and body["error"].startswith(body["code"] + ": "), body
        text = body["error"]
        body = {**body, "detail": body["error"][len(body["code"]) + 2:]}  # what callers read as the reason
    else:
        assert set(body) == {"error", "detail"} and body["error"], body
        text = f"{body['error']} {body['detail']}"
    for word in words:
        assert word in text, (word, body)
    return body


# ------------------------------------------------------------------------------------ /{model} (JSON tensor)

@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_json_tensor_round_trip_through_predict(api: WapcInstance, host: FakeHost, method: str) -> None:
    r = http(api, method, "/identity", json_tensor([1, 2, 3, 4]))
    assert r.status == 200 and r.content_type == "application/json"
    assert host.ops() == [("default", MLINFERENCE, PREDICT)]
    sent = host.calls[0].request
    assert sent == {"model": "identity", "index": 0, "tensor": {
        "dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0, "data": struct.pack("<4f", 1, 2, 3, 4)}}
    assert r.json() == {"result": "Success", "tensor": {"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0,
                                                       "data": list(struct.pack("<4f", 1, 2, 3, 4))}}


def test_json_tensor_forms(api: WapcInstance, host: FakeHost) -> None:
    raw = struct.pack("<4f", 1, 2, 3, 4)
    bodies = [
        {"dimensions": [4], "valueTypes": "ValueF32", "data": list(raw)},                 # bare name, no flags
        {"dimensions": [2, 2], "valueTypes": ["F32"], "flags": 0, "data": list(raw)},     # short spelling
        {"dimensions": [1, 4], "valueTypes": ["ValueF32", "ValueF32"], "data": list(raw)},  # one per dimension
        {"dimensions": [1, 4], "data": base64.b64encode(raw).decode()},                 # base64, default type
        {"data": list(raw), "flags": 0, "dimensions": [1, 4], "extra": {"ignored": [1, {"x": None}]}},
    ]
    for body in bodies:
        r = http(api, "PUT", "/identity/", json.dumps(body, indent=1).encode())  # trailing slash as the original
        assert r.status == 200, (body, r.body)
        tensor = host.calls[-1].request["tensor"]
        assert tensor["data"] == raw and tensor["valueTypes"] == ["ValueF32"]
        assert tensor["dimensions"] == body["dimensions"]


@pytest.mark.parametrize("name, size", [("ValueU8", 1), ("ValueS16", 2), ("valueI64", 8), ("ValueF64", 8),
                                        ("ValueBool", 1), ("ValueF16", 2)])
def test_json_tensor_value_types(api: WapcInstance, host: FakeHost, name: str, size: int) -> None:
    r = http(api, "POST", "/identity", json.dumps({"dimensions": [3], "valueTypes": [name], "flags": 0,
                                                   "data": [1] * (3 * size)}).encode())
    assert r.status == 200, r.body
    canonical = name[:5].capitalize() + name[5:].replace("S16", "I16")
    assert host.calls[-1].request["tensor"]["valueTypes"] == [canonical]
    assert r.json()["tensor"]["valueTypes"] == [canonical]


@pytest.mark.parametrize("body, words", [
    (b"", ["bad tensor JSON", "empty"]),
    (b"[1, 2]", ["JSON object"]),
    (b"{", ["invalid JSON", "byte 1"]),
    (b'{"dimensions": [1, 4], "data": [0, 0, 128, 63', ["invalid JSON"]),
    (b'{"dimensions": [1, 4], "data": [1, 2]} trailing', ["trailing"]),
    (b'{"dimensions": [1, 4], "valueTypes": ["ValueF32"], "data": [0, 0, 128, 63]}', ["need 16 bytes", "got 4"]),
    (b'{"dimensions": [1, 2], "valueTypes": ["ValueF32"], "data": [0, 0, 128, 63, 0, 0, 0, 64, 1]}',
     ["need 8 bytes", "got 9"]),
    (b'{"dimensions": [1, 1], "data": [0, 0, 128, 256]}', ["byte values", "data[3]"]),
    (b'{"dimensions": [1, 1], "data": [0, 0, 128, -1]}', ["byte values", "data[3]"]),
    (b'{"dimensions": [1, 1], "data": [0, 0, 1.5, 63]}', ["byte values", "data[2]"]),
    (b'{"dimensions": [1, 1], "data": [0, 0, "a", 63]}', ["byte values", "data[2]"]),
    (b'{"dimensions": [1, 1], "data": 12}', ["byte values"]),
    (b'{"dimensions": [1, 1], "data": "***"}', ["base64"]),
    (b'{"dimensions": [1, 4]}', ["MUST NOT be empty"]),
    (b'{"dimensions": [1, 4], "data": []}', ["MUST NOT be empty"]),
    (b'{"data": [0, 0, 128, 63]}', ["dimensions MUST be provided"]),
    (b'{"dimensions": [], "data": [0, 0, 128, 63]}', ["dimensions MUST be provided"]),
    (b'{"dimensions": [1, 0], "data": [0, 0, 128, 63]}', ["positive integers"]),
    (b'{"dimensions": [1, -4], "data": [0, 0, 128, 63]}', ["positive integers"]),
    (b'{"dimensions": "1,4", "data": [0, 0, 128, 63]}', ["positive integers"]),
    (b'{"dimensions": [1, 4.0], "data": [0, 0, 128, 63]}', ["positive integers"]),
    (b'{"dimensions": [1, 1], "valueTypes": ["ValueQ8"], "data": [0, 0, 128, 63]}', ["ValueQ8", "known"]),
    (b'{"dimensions": [1, 1], "valueTypes": [7], "data": [0, 0, 128, 63]}', ["valueTypes"]),
    (b'{"dimensions": [1, 1], "valueTypes": ["ValueF32", "ValueU8"], "data": [0, 0, 128, 63]}', ["mixed"]),
    (b'{"dimensions": [1, 1, 1], "valueTypes": ["ValueF32", "ValueF32"], "data": [0, 0, 128, 63]}',
     ["one per dimension"]),
    (b'{"dimensions": [1, 1], "flags": 4, "data": [0, 0, 128, 63]}', ["reserved"]),
    (b'{"dimensions": [1, 1], "flags": "big", "data": [0, 0, 128, 63]}', ["flags"]),
    (b'{"dimensions": [1, 1], "flags": 256, "data": [0, 0, 128, 63]}', ["flags"]),
    (b'{"dimensions": [1, 1], "data": [0, 0, 128, 63], "x": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}",
     ["nested too deeply"]),
    (b'{"dimensions": [1, 1], "data": [0, 0, 128, 63], "s": "\\x"}', ["bad escape"]),
    (b'{"dimensions": [4294967295, 4294967295, 4294967295], "data": [0]}', ["bytes of data"]),
    (b"\xff\xfe{}", ["JSON object"]),
])
def test_malformed_json_tensors_are_400_naming_the_problem(api: WapcInstance, host: FakeHost, body: bytes,
                                                           words: list[str]) -> None:
    r = http(api, "PUT", "/identity", body)
    assert_error(r, 400, "bad tensor JSON", *words)
    assert host.calls == []  # nothing was sent on


# ---------------------------------------------------------------------------------- /{model}/preprocess

def test_preprocess_route(api: WapcInstance, host: FakeHost) -> None:
    r = http(api, "PUT", "/effnetlite0/preprocess", IMAGE)
    assert r.status == 200, r.body
    assert host.ops() == [("default", MLINFERENCE, METADATA), ("", PREPROCESSOR, CONVERT),
                          ("default", MLINFERENCE, PREDICT)]
    assert host.calls[0].request == {"model": "effnetlite0"}
    assert host.calls[1].request == {"data": IMAGE, "spec": INPUT_SPEC, "defer_normalize": True}
    assert host.calls[2].request == {"model": "effnetlite0", "index": 0, "tensor": f32_tensor(PIXELS)}
    body = r.json()
    assert body["result"] == "Success"
    assert body["tensor"]["dimensions"] == [1, 1000] and body["tensor"]["valueTypes"] == ["ValueF32"]
    assert bytes(body["tensor"]["data"]) == LOGITS.tobytes()


def test_preprocess_without_a_spec_sends_none(api: WapcInstance, host: FakeHost) -> None:
    http(api, "POST", "/identity/preprocess", IMAGE)  # identity's input_spec is null: the default
    assert host.calls[1].request == {"data": IMAGE, "defer_normalize": True}


@pytest.mark.parametrize("path, meta_spec, want", [
    ("/effnetlite0/mnist/matches", None,
     {"color": "GRAY", "resize": "stretch", "crop": "none", "size": [28, 28], "layout": "NHWC", "dtype": "u8"}),
    ("/effnetlite0/mnist/matches", {"size": [32, 32], "layout": "NCHW", "dtype": "f32", "mean": [0.5] * 3,
                                    "std": [2] * 3, "color": "RGB", "resize": "shorter_side"},
     {"color": "GRAY", "resize": "stretch", "crop": "none", "size": [28, 28], "layout": "NCHW", "dtype": "f32",
      "mean": [0.5] * 3, "std": [2] * 3}),
    ("/effnetlite0/matches/rgb8", {"size": [240, 240], "layout": "NCHW", "dtype": "f32"},
     {"color": "RGB", "resize": "stretch", "crop": "none", "size": [240, 240], "layout": "NHWC", "dtype": "u8"}),
    ("/effnetlite0/preprocess/rgb8", None,
     {"color": "RGB", "resize": "stretch", "crop": "none", "size": [224, 224], "layout": "NHWC", "dtype": "u8"}),
])
def test_the_originals_fixed_pixel_routes(api: WapcInstance, host: FakeHost, path: str, meta_spec: Any,
                                          want: dict[str, Any]) -> None:
    """/mnist/matches feeds 28x28 grey digits in the model's layout and dtype; /rgb8 raw u8 RGB HWC at the
    model's size; the rest of the pipeline is the usual one."""
    host.on(MLINFERENCE, METADATA, {**EFFNET_META, "labels": None, "input_spec": meta_spec})
    r = http(api, "PUT", path, IMAGE)
    assert r.status == 200, r.body
    assert host.calls[1].request == {"data": IMAGE, "spec": want, "defer_normalize": True}
    assert host.ops()[2] == ("default", MLINFERENCE, PREDICT)


def test_a_deferred_normalisation_is_passed_on_to_predict(api: WapcInstance, host: FakeHost) -> None:
    """The pre-processor may answer u8 pixels and the normalisation it left for the provider: the API hands
    both over as they are (the provider's side is tested against the pre-processor's own f32 output)."""
    pixels = np.arange(3 * 224 * 224, dtype=np.uint32).astype(np.uint8).reshape(1, 3, 224, 224)
    normalize = {"mean": [127.0, 127.5, 126.25], "std": [128.0, 64.0, 58.5], "axis": 1}
    u8 = {"dimensions": [1, 3, 224, 224], "valueTypes": ["ValueU8"], "flags": 0, "data": pixels.tobytes()}
    host.on(PREPROCESSOR, CONVERT, pack({"normalize": normalize, "result": SUCCESS, "tensor": u8}))
    host.on(MLINFERENCE, PREDICT, pack({"result": SUCCESS, "tensor": f32_tensor(LOGITS)}))
    r = http(api, "PUT", "/effnetlite0/matches", IMAGE, query="k=1")
    assert r.status == 200, r.body
    assert host.calls[2].request == {"model": "effnetlite0", "index": 0, "tensor": u8, "normalize": normalize}


# ------------------------------------------------------------------------------------- /{model}/matches

def softmax_top(k: int) -> tuple[list[int], np.ndarray]:
    v = LOGITS.astype(np.float64).ravel()
    p = np.exp(v - v.max())
    p = (p / p.sum()).astype(np.float32)
    order = sorted(range(p.size), key=lambda i: (-float(p[i]), i))[:k]
    return order, p


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_matches_route_end_to_end_in_wasm(api: WapcInstance, host: FakeHost, method: str) -> None:
    r = http(api, method, "/effnetlite0/matches", IMAGE)
    assert r.status == 200, r.body
    assert host.ops() == [("default", MLINFERENCE, METADATA), ("", PREPROCESSOR, CONVERT),
                          ("default", MLINFERENCE, PREDICT), ("", POSTPROCESSOR, POSTPROCESS)]
    post = host.calls[3].request
    assert post == {"result": SUCCESS, "tensor": f32_tensor(LOGITS), "topK": 5, "probabilities": False,
                    "labels": LABELS}
    order, p = softmax_top(5)
    matches = r.json()
    assert [m["label"] for m in matches] == [LABELS[i] for i in order]
    assert all(set(m) == {"label", "probability"} for m in matches)
    # the numbers are the shortest text that round-trips the f32, as the original's ryu printed them
    texts = json_number_texts(r.body)
    assert texts == [shortest_f32(m) for m in (np.float32(x["probability"]) for x in matches)]
    np.testing.assert_allclose([m["probability"] for m in matches], p[order], rtol=1e-6)


@pytest.mark.parametrize("query, k", [("k=1", 1), ("k=3", 3), ("x=1&k=10&y=2", 10), ("k=1000", 1000),
                                      ("k=5000", 1000), ("", 5), ("other=7", 5)])
def test_matches_k(api: WapcInstance, host: FakeHost, query: str, k: int) -> None:
    r = http(api, "PUT", "/effnetlite0/matches", IMAGE, query=query)
    assert r.status == 200, r.body
    assert len(r.json()) == k
    assert [m["label"] for m in r.json()] == [LABELS[i] for i in softmax_top(k)[0]]


@pytest.mark.parametrize("query", ["k=0", "k=-1", "k=abc", "k=", "k=1.5", "k=99999999999", "k=4294967296",
                                   "k=%31"])
def test_bad_k_is_400(api: WapcInstance, host: FakeHost, query: str) -> None:
    assert_error(http(api, "PUT", "/effnetlite0/matches", IMAGE, query=query), 400, "k must be an integer")
    assert host.calls == []


def test_model_outputs_probabilities_skip_softmax(api: WapcInstance, host: FakeHost) -> None:
    meta = {**EFFNET_META, "outputs_probabilities": True, "labels": None}
    host.on(MLINFERENCE, METADATA, meta)
    r = http(api, "PUT", "/effnetlite0/matches", IMAGE, query="k=2")
    post = host.calls[-1].request
    assert post["probabilities"] is True and "labels" not in post
    top = np.argsort(-LOGITS.ravel(), kind="stable")[:2]
    got = r.json()
    assert [m["label"] for m in got] == [str(i) for i in top]
    assert [np.float32(m["probability"]) for m in got] == [LOGITS.ravel()[i] for i in top]


def test_probabilities_are_written_in_shortest_f32_form(api: WapcInstance, host: FakeHost) -> None:
    values = [0.71, 0.39758617, 0.0064496053, 0.00043687908, 1e-45, 1e-7, 3.4028235e38, 1.0, 0.1, 2.5e-10,
              1 / 3, 123456.79]
    matches = [{"label": f"c{i}", "probability": v} for i, v in enumerate(values)]
    answer = msgpack.packb({"matches": matches}, use_single_float=True)
    host.on(POSTPROCESSOR, POSTPROCESS, answer)
    r = http(api, "PUT", "/effnetlite0/matches", IMAGE)
    assert r.status == 200
    texts = json_number_texts(r.body)
    assert texts == [shortest_f32(v) for v in values]
    assert texts[:5] == ["0.71", "0.39758617", "0.0064496053", "0.00043687908", "1e-45"]
    assert [np.float32(t) for t in texts] == [np.float32(v) for v in values]


def test_nan_probability_becomes_null(api: WapcInstance, host: FakeHost) -> None:
    answer = msgpack.packb({"matches": [{"label": "a", "probability": 0.5}, {"label": "b", "probability": math.nan}]},
                           use_single_float=True)
    host.on(POSTPROCESSOR, POSTPROCESS, answer)
    r = http(api, "PUT", "/effnetlite0/matches", IMAGE)
    assert r.json() == [{"label": "a", "probability": 0.5}, {"label": "b", "probability": None}]


def test_postprocessor_error_is_500(api: WapcInstance, host: FakeHost) -> None:
    host.on(POSTPROCESSOR, POSTPROCESS, {"matches": [], "error": "unsupported value type ValueU8"})
    assert_error(http(api, "PUT", "/effnetlite0/matches", IMAGE), 500, "post-processing failed", "ValueU8")


def test_empty_image_is_400(api: WapcInstance, host: FakeHost) -> None:
    assert_error(http(api, "PUT", "/effnetlite0/matches", b""), 400, "undecodable image", "empty")
    assert all(op[2] != CONVERT for op in host.ops())


# ---------------------------------------------------------------------------------------- metadata cache

def test_metadata_is_cached_per_model(api: WapcInstance, host: FakeHost) -> None:
    for _ in range(3):
        assert http(api, "PUT", "/effnetlite0/matches", IMAGE).status == 200
    assert http(api, "PUT", "/identity/preprocess", IMAGE).status == 200
    assert http(api, "PUT", "/effnetlite0/preprocess", IMAGE).status == 200
    fetched = [c.request["model"] for c in host.calls if c.operation == METADATA]
    assert fetched == ["effnetlite0", "identity"]


def echo_any_model(payload: bytes) -> bytes:
    return pack({"result": SUCCESS, "tensor": unpack(payload)["tensor"]})


def cached_use(api: WapcInstance, model: str) -> int:
    """One use of the model's cached metadata: /v2 infer (the routes that report a model's state ask afresh)."""
    return http(api, "POST", f"/v2/models/{model}/infer", infer_body([1, 2, 3, 4], [1, 4])).status


def test_cache_is_bounded_and_evicts_the_least_recently_used(api: WapcInstance, host: FakeHost) -> None:
    models = [f"m{i}" for i in range(40)]
    host.on(MLINFERENCE, METADATA, lambda payload: pack({**IDENTITY_META, "model_name": unpack(payload)["model"]}))
    host.on(MLINFERENCE, PREDICT, echo_any_model)
    for model in models:
        assert cached_use(api, model) == 200
    assert cached_use(api, "m39") == 200  # recent: cached
    assert cached_use(api, "m0") == 200   # evicted long ago: fetched again
    fetched = [c.request["model"] for c in host.calls if c.operation == METADATA]
    assert fetched == [*models, "m0"]


def test_cache_refreshes_after_many_uses(api: WapcInstance, host: FakeHost) -> None:
    for _ in range(300):
        assert cached_use(api, "identity") == 200
    assert 2 <= sum(c.operation == METADATA for c in host.calls) <= 3


def test_state_routes_ask_the_provider_every_time(api: WapcInstance, host: FakeHost) -> None:
    for path in ("/v2/models/identity", "/v2/models/identity/ready", "/v2/models/identity/config"):
        assert http(api, "GET", path).status == 200
        assert http(api, "GET", path).status == 200
    assert sum(c.operation == METADATA for c in host.calls) == 6


def test_unknown_model_from_predict_drops_the_cached_metadata(api: WapcInstance, host: FakeHost) -> None:
    assert http(api, "PUT", "/effnetlite0/preprocess", IMAGE).status == 200
    host.on(MLINFERENCE, PREDICT, {"result": unknown_model("effnetlite0"), "tensor": {}})
    assert_error(http(api, "PUT", "/effnetlite0/preprocess", IMAGE), 404, "unknown model")
    host.on(MLINFERENCE, PREDICT, predict)
    assert http(api, "PUT", "/effnetlite0/preprocess", IMAGE).status == 200
    assert sum(c.operation == METADATA for c in host.calls) == 2


def test_errors_are_not_cached(api: WapcInstance, host: FakeHost) -> None:
    host.on(MLINFERENCE, METADATA, {"error": {"modelLoading": "model 'effnetlite0' is still loading"}})
    assert_error(http(api, "PUT", "/effnetlite0/matches", IMAGE), 503, "model loading")
    host.on(MLINFERENCE, METADATA, get_metadata)
    assert http(api, "PUT", "/effnetlite0/matches", IMAGE).status == 200


# ------------------------------------------------------------------------------------ error mapping

ERROR_VARIANTS = [
    ("contextNotFoundError", "unknown model 'x'; this actor's link serves: identity", 404, "unknown model"),
    ("invalidModel", "unknown model 'x'", 404, "unknown model"),
    ("invalidModel", "model 'x' (x/1.0) failed to load: bad graph", 500, "model failed to load"),
    ("corruptInputTensor", "data is 3 bytes but dimensions [1, 4] of ValueF32 need 16", 400, "bad tensor"),
    ("invalidEncoding", "graph_encoding 'open_vino' is not supported", 400, "bad input"),
    ("modelLoading", "model 'x' is still loading; retry shortly", 503, "model loading"),
    ("overloaded", "model 'x' has 4 requests running and 16 queued", 429, "overloaded"),
    ("runtimeError", "output index 2 is out of range", 500, "inference failed"),
    ("onnxError", "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT", 500, "inference failed"),
    ("tensorflowError", "op failed", 500, "inference failed"),
    ("openVinoError", "no device", 500, "inference failed"),
    ("brandNewVariant", "from the future", 500, "inference failed"),
]


@pytest.mark.parametrize("variant, message, status, error", ERROR_VARIANTS)
@pytest.mark.parametrize("route", ["/identity", "/effnetlite0/preprocess", "/effnetlite0/matches",
                                   "/v2/models/identity/infer"])
def test_predict_error_variants(api: WapcInstance, host: FakeHost, variant: str, message: str, status: int,
                                error: str, route: str) -> None:
    host.on(MLINFERENCE, PREDICT, {"result": {"error": {variant: message}},
                                   "tensor": {"dimensions": [], "valueTypes": ["ValueF32"], "flags": 0, "data": b""}})
    body = (json.dumps({"inputs": [{"name": "0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).encode()
            if route.startswith("/v2") else json_tensor([1, 2, 3, 4]) if route == "/identity" else IMAGE)
    r = http(api, "POST", route, body)
    detail = assert_error(r, status, error)["detail"]
    assert variant in detail and message in detail
    if status in (429, 503):
        assert r.headers.get("retry-after") == ["1"]
    assert POSTPROCESS not in [op[2] for op in host.ops()]  # the original post-processed errors; we do not


@pytest.mark.parametrize("variant, message, status, error", ERROR_VARIANTS)
def test_metadata_error_variants(api: WapcInstance, host: FakeHost, variant: str, message: str, status: int,
                                 error: str) -> None:
    host.on(MLINFERENCE, METADATA, {"error": {variant: message}})
    for route in ("/effnetlite0/matches", "/effnetlite0/preprocess"):
        assert_error(http(api, "PUT", route, IMAGE), status, error, message)
    assert_error(http(api, "GET", "/v2/models/effnetlite0"), status, error)
    assert all(op[2] == METADATA for op in host.ops())


def test_real_unknown_model_answer(api: WapcInstance, host: FakeHost) -> None:
    assert_error(http(api, "PUT", "/nosuch/matches", IMAGE), 404, "unknown model", "nosuch")
    assert_error(http(api, "PUT", "/nosuch", json_tensor([1, 2, 3, 4])), 404, "unknown model", "nosuch")
    assert_error(http(api, "GET", "/v2/models/nosuch"), 404, "unknown model")
    assert_error(http(api, "GET", "/v2/models/nosuch/ready"), 404, "unknown model")


@pytest.mark.parametrize("reason, status, error", [
    ("truncated JPEG scan", 400, "undecodable image"),
    ("unknown image format (expected JPEG or PNG)", 400, "undecodable image"),
    ("unsupported PNG bit depth 4 in colour type 2", 400, "undecodable image"),
    ("image too large: 60000000 pixels exceeds the limit of 50000000 pixels", 400, "image too large"),
    ("bad input spec: layout must be NCHW or NHWC", 500, "bad model input spec"),
])
def test_preprocessor_errors(api: WapcInstance, host: FakeHost, reason: str, status: int, error: str) -> None:
    host.on(PREPROCESSOR, CONVERT, {"result": {"error": {"invalidEncoding": reason}},
                                    "tensor": {"dimensions": [], "valueTypes": [], "flags": 0, "data": b""}})
    for route in ("/effnetlite0/matches", "/effnetlite0/preprocess"):
        assert_error(http(api, "PUT", route, IMAGE), status, error, reason)
    assert PREDICT not in [op[2] for op in host.ops()]


@pytest.mark.parametrize("kind, text, status, error", [
    ("timeout", "Failed to perform RPC call: request timeout after 2 s (MlInference.Predict)", 504, "timeout"),
    ("timeout", "actor did not answer in time: all instances are busy", 504, "timeout"),
    ("timeout", "actor ran past its 10000 ms deadline", 504, "timeout"),
    ("not_running", "Call alias not found: waft/preprocessor on default", 503, "service unavailable"),
    ("not_running", "no one is serving VABC (MlInference.Predict): is it running?", 503, "service unavailable"),
    ("not_linked", "Invocation not authorized: missing link definition for wasmcloud:mlinference on default", 503,
     "service unavailable"),
    ("denied", "Invocation not authorized: missing capability claim for wasmcloud:mlinference", 403, "forbidden"),
    ("too_large", "invocation of MlInference.Predict is too large for the lattice", 413, "too large"),
    ("failed", "malformed MlInference.Predict request: bad", 500, "internal error"),
    # the kind decides, never the sentence: a failure whose text speaks of a timeout is still a 500
    ("failed", "the model said: request timeout, not running, deadline", 500, "internal error"),
])
@pytest.mark.parametrize("part", [(PREPROCESSOR, CONVERT), (MLINFERENCE, PREDICT), (MLINFERENCE, METADATA),
                                  (POSTPROCESSOR, POSTPROCESS)])
def test_host_call_failures(api: WapcInstance, host: FakeHost, kind: str, text: str, status: int, error: str,
                            part: tuple[str, str]) -> None:
    def fail(payload: bytes) -> bytes:
        raise HostCallError(text, kind=kind)

    host.on(*part, fail)
    r = http(api, "PUT", "/effnetlite0/matches", IMAGE)
    detail = assert_error(r, status, error)["detail"]
    assert detail.endswith(f" failed: {text}")  # the message, without the kind the host prefixed
    assert host.calls[-1].operation == part[1]


@pytest.mark.parametrize("answer", [b"", b"\xc1", pack([1, 2]), pack({"result": 7}), pack({"result": SUCCESS}),
                                    pack({"result": SUCCESS, "tensor": "no"}),
                                    pack({"result": {"error": {"a": "b", "c": "d"}}})])
@pytest.mark.parametrize("part", [(PREPROCESSOR, CONVERT), (MLINFERENCE, PREDICT), (POSTPROCESSOR, POSTPROCESS)])
def test_unreadable_answers_are_500_not_traps(api: WapcInstance, host: FakeHost, answer: bytes,
                                              part: tuple[str, str]) -> None:
    host.on(*part, answer)
    assert_error(http(api, "PUT", "/effnetlite0/matches", IMAGE), 500)
    assert http(api, "GET", "/healthz").status == 200  # the instance is fine


# --------------------------------------------------------------------------------- routes and methods

@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("PUT", "/"), ("GET", "/a/b/c"), ("PUT", "/effnetlite0/unknown"), ("PUT", "/a//matches"),
    ("PUT", "/a/b/c/d/e/f/g/h/i/j"), ("GET", "/v2/foo"), ("GET", "/v2/models"), ("GET", "/v2/models/m/versions"),
    ("POST", "/v2/models/m/explain"), ("GET", "/v2/health"),
])
def test_unknown_routes_are_404_json(api: WapcInstance, host: FakeHost, method: str, path: str) -> None:
    assert_error(http(api, method, path), 404, "not found")
    assert host.calls == []


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/identity", "PUT, POST"), ("DELETE", "/identity", "PUT, POST"), ("GET", "/m/matches", "PUT, POST"),
    ("PATCH", "/m/preprocess", "PUT, POST"), ("POST", "/healthz", "GET"), ("PUT", "/models", "GET"),
    ("GET", "/v2/models/m/infer", "POST"), ("PUT", "/v2/models/m/infer", "POST"), ("POST", "/v2/health/ready", "GET"),
    ("DELETE", "/v2/models/m", "GET"),
])
def test_wrong_methods_are_405_with_allow(api: WapcInstance, host: FakeHost, method: str, path: str,
                                          allow: str) -> None:
    r = http(api, method, path)
    assert_error(r, 405, "method not allowed", method)
    assert r.headers["allow"] == [allow]
    assert host.calls == []


def test_query_left_on_the_path_is_ignored(api: WapcInstance) -> None:
    assert http(api, "GET", "/healthz?verbose=1").status == 200


def test_healthz(api: WapcInstance, host: FakeHost) -> None:
    r = http(api, "GET", "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"} and host.calls == []


def test_models_lists_what_mlinference_says(api: WapcInstance, host: FakeHost) -> None:
    r = http(api, "GET", "/models")
    assert r.status == 200
    assert host.ops() == [("default", MLINFERENCE, LIST)]
    assert host.calls[0].request == {}
    assert r.json() == unpack(host.answers[(MLINFERENCE, LIST)](b""))


def test_too_large_json_is_413(api: WapcInstance, host: FakeHost) -> None:
    body = b'{"dimensions":[1],"data":[' + b"0," * (16 << 20) + b"0]}"
    assert_error(http(api, "PUT", "/identity", body), 413, "too large")
    assert host.calls == []


# ------------------------------------------------------------------------------------------ KServe v2

def test_v2_server_metadata_and_liveness(api: WapcInstance) -> None:
    """The version is the package's (the build passes it in), the extensions those Triton's docs name."""
    from waft import __version__

    assert http(api, "GET", "/v2").json() == {"name": "waft", "version": __version__, "extensions": [
        "binary_tensor_data", "classification", "model_repository", "model_configuration", "statistics"]}
    assert http(api, "GET", "/v2/health/live").json() == {"live": True}


def test_v2_errors_carry_the_message_in_error(api: WapcInstance, host: FakeHost) -> None:
    """Triton and KServe clients show `error` only: under /v2 it is the whole message, the category in `code`;
    the original's routes keep {"error": category, "detail": reason}."""
    v2 = http(api, "GET", "/v2/models/nosuch").json()
    assert set(v2) == {"error", "code"} and v2["code"] == "unknown model"
    assert v2["error"].startswith("unknown model: model nosuch is not installed")
    legacy = http(api, "PUT", "/nosuch", json_tensor([1, 2, 3, 4])).json()
    assert set(legacy) == {"error", "detail"} and legacy["error"] == "unknown model"


def test_v2_model_config_as_triton_writes_it(api: WapcInstance) -> None:
    config = http(api, "GET", "/v2/models/effnetlite0/config").json()
    tensor_in = {"name": EFFNET_META["input_name"], "data_type": "TYPE_FP32", "dims": [1, 3, 224, 224]}
    tensor_out = {"name": EFFNET_META["output_name"], "data_type": "TYPE_FP32", "dims": [1, 1000]}
    assert config == {"name": "effnetlite0", "platform": "onnx_onnxv1", "backend": "onnxruntime", "max_batch_size": 0,
                      "input": [tensor_in], "output": [tensor_out]}
    assert http(api, "GET", "/v2/models/effnetlite0/versions/1/config").json() == config
    assert_error(http(api, "GET", "/v2/models/effnetlite0/versions/2/config"), 404, "unknown version")


def test_v2_model_stats_from_the_provider(api: WapcInstance, host: FakeHost) -> None:
    stats = {"last_inference": 1700000000000, "inference_count": 3, "execution_count": 2,
             "inference_stats": {"success": {"count": 3, "ns": 900}, "fail": {"count": 1, "ns": 5},
                                 "queue": {"count": 3, "ns": 30}, "compute_input": {"count": 3, "ns": 60},
                                 "compute_infer": {"count": 3, "ns": 700}, "compute_output": {"count": 3, "ns": 9}},
             "batch_stats": [{"batch_size": 1, "compute_infer": {"count": 1, "ns": 200}}]}
    host.on(MLINFERENCE, LIST, {"models": [{"name": "other", "stats": {}}, {"name": "effnetlite0", "stats": stats}]})
    r = http(api, "GET", "/v2/models/effnetlite0/stats")
    assert r.status == 200, r.body
    assert r.json() == {"model_stats": [{"name": "effnetlite0", "version": "1", **stats}]}


def test_v2_ready(api: WapcInstance, host: FakeHost) -> None:
    r = http(api, "GET", "/v2/health/ready")
    assert r.status == 200 and r.json() == {"ready": True}
    host.on(MLINFERENCE, LIST, {"models": [{"name": "a", "status": "ready"}, {"name": "b", "status": "loading"},
                                           {"name": "c", "status": "failed", "error": {"invalidModel": "x"}}]})
    r = http(api, "GET", "/v2/health/ready")
    assert_error(r, 503, "not ready", "b (loading)", "c (failed)")
    host.on(MLINFERENCE, LIST, {"models": []})
    assert http(api, "GET", "/v2/health/ready").status == 200


def test_v2_model_metadata(api: WapcInstance, host: FakeHost) -> None:
    r = http(api, "GET", "/v2/models/effnetlite0")
    assert r.status == 200
    assert r.json() == {"name": "effnetlite0", "versions": ["1"], "platform": "onnx_onnxv1",
                        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 224, 224]}],
                        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 1000]}]}
    assert http(api, "GET", "/v2/models/effnetlite0/versions/1").json() == r.json()
    host.on(MLINFERENCE, METADATA, {"graph_encoding": "tensorflow", "tensor_type": "U8",
                                    "tensor_dimensions_in": [None, 4]})
    assert http(api, "GET", "/v2/models/plus3").json() == {
        "name": "plus3", "versions": ["1"], "platform": "tensorflow_graphdef",
        "inputs": [{"name": "input0", "datatype": "UINT8", "shape": [-1, 4]}],
        "outputs": [{"name": "output0", "datatype": "UINT8", "shape": [-1]}]}


def test_v2_model_ready(api: WapcInstance, host: FakeHost) -> None:
    assert http(api, "GET", "/v2/models/identity/ready").json() == {"name": "identity", "ready": True}
    host.on(MLINFERENCE, METADATA, {"error": {"modelLoading": "still loading"}})
    assert_error(http(api, "GET", "/v2/models/other/ready"), 503, "model loading")


def infer_body(data: Any, shape: list[int], datatype: str = "FP32", **extra: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "0", "shape": shape, "datatype": datatype, "data": data}],
                       **extra}).encode()


@pytest.mark.parametrize("data", [[1, 2, 3, 4], [[1, 2, 3, 4]], [[1.0, 2.0], [3.0, 4.0]], [1e0, 2, 3.0, 4.00]])
def test_v2_infer_fp32(api: WapcInstance, host: FakeHost, data: Any) -> None:
    r = http(api, "POST", "/v2/models/identity/infer", infer_body(data, [1, 4], id="r1", outputs=[{"name": "1"}]))
    assert r.status == 200, r.body
    tensor = {"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0, "data": struct.pack("<4f", 1, 2, 3, 4)}
    # the one tensor for readers of one input, and Waft's named `inputs` and requested `outputs`
    assert host.calls[-1].request == {"model": "identity", "index": 0, "tensor": tensor,
                                      "inputs": [{"name": "0", "tensor": tensor}], "outputs": ["1"]}
    assert r.json() == {"model_name": "identity", "model_version": "1", "id": "r1", "outputs": [
        {"name": "1", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def test_v2_infer_floats_are_exact_and_shortest(api: WapcInstance) -> None:
    values = [0.1, 1 / 3, -2.5e-8, 3.4028235e38, 1e-45, 0.71]
    r = http(api, "POST", "/v2/models/identity/infer", infer_body(values, [6]))
    assert r.status == 200
    out = r.json()["outputs"][0]["data"]
    assert [np.float32(x) for x in out] == [np.float32(v) for v in values]
    assert json_number_texts(r.body)[-6:] == [shortest_f32(v) for v in values]


@pytest.mark.parametrize("datatype, values, fmt", [
    ("INT64", [-(2**63), 2**63 - 1, 0], "<3q"), ("INT8", [-128, 127, 5], "<3b"), ("UINT8", [0, 255, 7], "<3B"),
    ("UINT16", [0, 65535, 1], "<3H"), ("INT32", [-(2**31), 2**31 - 1, 3], "<3i"),
    ("UINT32", [0, 2**32 - 1, 9], "<3I"), ("FP64", [0.1, -1e300, 5e-324], "<3d"), ("BOOL", [True, False, True], "<3?"),
])
def test_v2_infer_datatypes(api: WapcInstance, host: FakeHost, datatype: str, values: list[Any], fmt: str) -> None:
    r = http(api, "POST", "/v2/models/identity/infer", infer_body(values, [3], datatype))
    assert r.status == 200, r.body
    assert host.calls[-1].request["tensor"]["data"] == struct.pack(fmt, *values)
    output = r.json()["outputs"][0]
    assert output["datatype"] == datatype and output["data"] == values


def test_v2_infer_binary_extension(api: WapcInstance, host: FakeHost) -> None:
    raw = struct.pack("<4f", 1, 2, 3, 4)
    header = json.dumps({"inputs": [{"name": "0", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    r = http(api, "POST", "/v2/models/identity/infer", header + raw,
             headers={"Inference-Header-Content-Length": [str(len(header))]})
    assert r.status == 200, r.body
    assert host.calls[-1].request["tensor"]["data"] == raw
    assert r.json()["outputs"][0]["data"] == [1, 2, 3, 4]
    half = np.array([1, 2, 3, 4], np.float16).tobytes()
    header = json.dumps({"inputs": [{"name": "0", "shape": [4], "datatype": "FP16",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    r = http(api, "POST", "/v2/models/identity/infer", header + half,
             headers={"inference-header-content-length": [str(len(header))]})
    assert r.status == 200 and r.json()["outputs"][0]["data"] == [1, 2, 3, 4]


@pytest.mark.parametrize("body, words, headers", [
    (b"", ["empty"], None),
    (b"[]", ["JSON object"], None),
    (infer_body([1, 2, 3], [1, 4]), ["needs 4 values", "data has 3"], None),
    (infer_body([[1, 2], [3]], [2, 2]), ["data has 3"], None),
    (infer_body([1, 2, 3, 4], [1, 4], "FP128"), ["FP128", "supported"], None),
    (infer_body([1, 2, 3, 4], [1, 4], "BYTES"), ["BYTES"], None),
    (infer_body([1, 2, 3, 4], [1, 4], "FP16"), ["FP16", "binary"], None),
    (infer_body([1, 2, 3, 4.5], [1, 4], "INT32"), ["integer"], None),
    (infer_body([1, 2, 3, 256], [1, 4], "UINT8"), ["range"], None),
    (infer_body([1, 2, 3, "4"], [1, 4]), ["number"], None),
    (infer_body([1, 2, 3, 4], [1, 0]), ["shape", "positive"], None),
    (infer_body([1, 2, 3, 4], []), ["shape"], None),
    (infer_body(3, [1]), ["array expected"], None),
    (infer_body([1, 2, 3, 4], [4], "BOOL"), ["BOOL"], None),
    (json.dumps({"inputs": []}).encode(), ["one input"], None),
    (json.dumps({"id": "x"}).encode(), ["one input"], None),
    (json.dumps({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}).encode(), ["needs a name"], None),
    (json.dumps({"inputs": [{"name": "0", "shape": [1], "data": [1]}]}).encode(), ["datatype"], None),
    (json.dumps({"inputs": [{"name": "0", "shape": [1], "datatype": "FP32"}]}).encode(), ["needs data"], None),
    (json.dumps({"inputs": [{"name": "0", "shape": [1], "datatype": "FP32", "data": [1]}],
                 "outputs": [{"name": "1", "parameters": {"classification": 0}}]}).encode(), ["classification"], None),
    (json.dumps({"inputs": [{"name": "0", "shape": [1], "datatype": "FP32", "data": [1]}],
                 "outputs": [{"name": "1"}, {"name": "1"}]}).encode(), ["requested twice"], None),
    (json.dumps({"id": 5, "inputs": []}).encode(), ["id must be a string"], None),
    (json.dumps({"inputs": [{"name": "0", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}
                ).encode(),
     ["binary_data_size"], None),
    (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', ["Inference-Header-Content-Length"],
     {"Inference-Header-Content-Length": ["x"]}),
    (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', ["Inference-Header-Content-Length"],
     {"Inference-Header-Content-Length": ["99999"]}),
])
def test_v2_bad_inference_requests(api: WapcInstance, host: FakeHost, body: bytes, words: list[str],
                                   headers: dict[str, list[str]] | None) -> None:
    r = http(api, "POST", "/v2/models/identity/infer", body, headers=headers)
    assert_error(r, 400, "bad inference request", *words)
    assert host.calls == []


# ------------------------------------------------------------------------------------------- robustness

def test_garbage_requests_never_trap(api: WapcInstance, host: FakeHost) -> None:
    rng = np.random.default_rng(5)
    seeds = [json_tensor([1, 2, 3, 4]), infer_body([[1, 2], [3, 4]], [2, 2]), IMAGE]
    routes = ["/identity", "/v2/models/identity/infer", "/effnetlite0/matches"]
    for seed, route in zip(seeds, routes, strict=True):
        for cut in range(0, len(seed), 3):
            r = http(api, "POST", route, seed[:cut])
            assert r.status in (200, 400), (route, cut, r.body)
        for _ in range(150):
            body = bytearray(seed)
            for pos in rng.integers(0, len(body), size=3):
                body[pos] = int(rng.integers(0, 256))
            r = http(api, "POST", route, bytes(body))
            assert r.status in (200, 400, 404), (route, bytes(body), r.body)
            json.loads(r.body)  # always valid JSON, whatever bytes came in
    assert http(api, "PUT", "/effnetlite0/matches", IMAGE).status == 200


def test_undecodable_http_request_is_a_guest_error(api: WapcInstance) -> None:
    with pytest.raises(GuestError):
        api.call("HttpServer.HandleRequest", b"\x93\x01\x02")


def test_5xx_answers_are_logged(api: WapcInstance, host: FakeHost) -> None:
    host.on(MLINFERENCE, PREDICT, {"result": {"error": {"onnxError": "boom"}}, "tensor": {}})
    http(api, "PUT", "/identity", json_tensor([1, 2, 3, 4]))
    assert any("boom" in entry["text"] and entry["level"] == "warn" for entry in host.logs)
    assert LOGGING not in [c.namespace for c in host.calls]


def test_health_operation(api: WapcInstance) -> None:
    assert unpack(api.call("Actor.HealthRequest", b"\x80")) == {"healthy": True, "message": "ok"}


# ------------------------------------------------------------------ issue 6: install hint, decompression bomb

@pytest.mark.parametrize("route", ["/mobilenetv27/matches", "/squeezenetv117/preprocess", "/nosuch",
                                   "/v2/models/mobilenetv27", "/v2/models/mobilenetv27/ready"])
def test_unknown_model_says_how_to_install_it(api: WapcInstance, host: FakeHost, route: str) -> None:
    """A zoo model whose file was never added is not served by the link: mlinference answers
    contextNotFoundError, and the 404 says how to add it (generic: any unknown model gets the hint)."""
    model = route.split("/")[3 if route.startswith("/v2") else 1]
    method = "GET" if route.startswith("/v2") else "PUT"
    body = json_tensor([1, 2, 3, 4]) if route == "/nosuch" else IMAGE
    detail = assert_error(http(api, method, route, body), 404, "unknown model")["detail"]
    assert f"model {model} is not installed" in detail
    assert f"`waft models add {model} FILE`" in detail and f"`waft models fetch {model}`" in detail
    assert "redeploy" in detail
    assert "contextNotFoundError" in detail and "this actor's link serves" in detail  # mlinference's own words


def test_failed_model_gets_no_install_hint(api: WapcInstance, host: FakeHost) -> None:
    host.on(MLINFERENCE, METADATA, {"error": {"invalidModel": "model 'x' (x/1.0) failed to load: bad graph"}})
    detail = assert_error(http(api, "PUT", "/effnetlite0/matches", IMAGE), 500, "model failed to load")["detail"]
    assert "waft models add" not in detail


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A ~100-byte PNG whose IHDR declares width x height RGB pixels (30 GB decoded); one tiny IDAT."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("route", ["/effnetlite0/matches", "/effnetlite0/preprocess"])
def test_decompression_bomb_png_is_refused_before_allocating(api: WapcInstance, host: FakeHost, route: str) -> None:
    """The real pre-processor actor, in a 16 MiB sandbox: a PNG declaring 100 000 x 100 000 pixels is refused
    from its header (the 50 MP default max_pixels), and the API answers 400 "image too large", as the issue
    asks: a bomb is bad input, not a big body (413 stays for bytes). Its memory grows by buffers only."""
    from actor_support import compiled

    from waft.host.wapc import Limits

    pp = compiled("preprocessor").instantiate(lambda *_: b"", Limits(memory_bytes=16 << 20))
    memory = pp._memory.data_len(pp.store)
    host.on(PREPROCESSOR, CONVERT, lambda payload: pp.call(CONVERT, payload))
    data = bomb_png()
    assert len(data) < 200
    body = assert_error(http(api, "PUT", route, data), 400, "image too large")
    assert "100000 x 100000 pixels exceeds the limit of 50000000 pixels" in body["detail"], body
    assert pp._memory.data_len(pp.store) - memory <= 1 << 20  # request and answer buffers only
    assert PREDICT not in [op[2] for op in host.ops()]
