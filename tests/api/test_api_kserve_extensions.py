"""Edges of the API actor's Triton extensions that a real provider does not produce on demand, with the
provider's side scripted (FakeHost: the API actor runs in the waPC binding, no lattice): big-endian answers sent
as binary output, classification without labels and of a one-dimensional output, the repository index's
filter and states, load failures, server readiness with an unloaded model, bad repository bodies. The wire is
read back independently (json, struct) as the Open Inference Protocol and Triton's "Binary Tensor Data",
"Classification" and "Model Repository" extensions lay it out; tests/e2e/test_triton_clients.py drives the
same routes with tritonclient against a real provider."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from api_support import MLINFERENCE, FakeHost, Response, http, new_api, pack, unpack

PREDICT = "MlInference.Predict"
METADATA = "MlInference.GetMetadata"
LIST = "MlInference.ListModels"
META = {"model_name": "m", "graph_encoding": "onnx", "tensor_type": "F32", "tensor_dimensions_in": [1, 3],
        "tensor_dimensions_out": [5], "labels": None, "input_name": "x", "output_name": "y",
        "inputs": [{"name": "x", "valueType": "ValueF32", "dimensions": [1, 3]},
                   {"name": "k", "valueType": "ValueI64", "dimensions": None}],
        "outputs": [{"name": "y", "valueType": "ValueF32", "dimensions": [5]},
                    {"name": "z", "valueType": "ValueI16", "dimensions": [2, -1]}]}
Y = np.array([0.5, -2.0, 3.25, 3.25, 1.0], np.float32)
Z = np.array([[1, -300, 7], [9, 0, -1]], np.int16)


def tensor(array: np.ndarray, big_endian: bool = False) -> dict[str, Any]:
    names = {np.dtype(np.float32): "ValueF32", np.dtype(np.int16): "ValueI16"}
    order = ">" if big_endian else "<"
    return {"dimensions": list(array.shape), "valueTypes": [names[array.dtype]], "flags": 2 if big_endian else 0,
            "data": array.astype(array.dtype.newbyteorder(order)).tobytes()}


def answer_outputs(big_endian: bool):
    def predict(payload: bytes) -> bytes:
        wanted = unpack(payload)["outputs"] or ["y", "z"]
        arrays = {"y": Y, "z": Z}
        outputs = [{"name": n, "tensor": tensor(arrays[n], big_endian)} for n in wanted]
        return pack({"result": {"success": None}, "tensor": outputs[0]["tensor"], "outputs": outputs})
    return predict


@pytest.fixture()
def host() -> FakeHost:
    h = FakeHost()
    h.on(MLINFERENCE, METADATA, META)
    h.on(MLINFERENCE, PREDICT, answer_outputs(False))
    h.on(MLINFERENCE, LIST, {"models": [
        {"name": "a", "status": "ready"}, {"name": "b", "status": "loading"},
        {"name": "c", "status": "failed", "reason": "model 'c' failed to load: bad file"},
        {"name": "d", "status": "unloaded", "reason": "unloaded on request"}]})
    return h


def infer(api: Any, outputs: list[dict[str, Any]] | None = None, **parameters: Any) -> Response:
    body: dict[str, Any] = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                                       {"name": "k", "shape": [1], "datatype": "INT64", "data": [4]}]}
    if outputs is not None:
        body["outputs"] = outputs
    if parameters:
        body["parameters"] = parameters
    return http(api, "POST", "/v2/models/m/infer", json.dumps(body).encode())


def split_binary(r: Response) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the bytes after it, as Inference-Header-Content-Length says."""
    headers = {k.lower(): v for k, v in r.headers.items()}
    n = int(headers["inference-header-content-length"][0])
    return json.loads(r.body[:n]), r.body[n:]


def test_scripted_provider_metadata_and_config_list_every_input_and_output(host: FakeHost) -> None:
    api = new_api(host)
    meta = http(api, "GET", "/v2/models/m").json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("x", "FP32", [1, 3]),
                                                                               ("k", "INT64", [-1])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [("y", "FP32", [5]),
                                                                                ("z", "INT16", [2, -1])]
    config = http(api, "GET", "/v2/models/m/config").json()
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [("x", "TYPE_FP32", [1, 3]),
                                                                                ("k", "TYPE_INT64", [])]


def test_scripted_provider_every_input_by_name_and_big_endian_answers_as_little_endian_binary(host: FakeHost) -> None:
    host.on(MLINFERENCE, PREDICT, answer_outputs(True))
    api = new_api(host)
    r = infer(api, binary_data_output=True)
    assert r.status == 200, r.body
    sent = host.calls[-1].request
    assert [i["name"] for i in sent["inputs"]] == ["x", "k"] and sent["outputs"] == []
    assert struct.unpack("<q", sent["inputs"][1]["tensor"]["data"]) == (4,)
    header, data = split_binary(r)
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert [o["name"] for o in header["outputs"]] == ["y", "z"] and sizes == [Y.nbytes, Z.nbytes]
    assert all("data" not in o for o in header["outputs"])
    np.testing.assert_array_equal(np.frombuffer(data[:sizes[0]], "<f4"), Y)
    np.testing.assert_array_equal(np.frombuffer(data[sizes[0]:], "<i2").reshape(2, 3), Z)
    # per-output binary_data wins over the request's default: y as JSON, z binary
    header, data = split_binary(infer(api, [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}],
                                      binary_data_output=True))
    assert header["outputs"][0]["data"] == Y.tolist() and len(data) == Z.nbytes
    assert host.calls[-1].request["outputs"] == ["y", "z"]


def classes_of(r: Response) -> tuple[list[int], list[str]]:
    out, = r.json()["outputs"]
    assert out["datatype"] == "BYTES"
    return out["shape"], out["data"]


def test_scripted_provider_classification_without_labels_and_of_one_dimension(host: FakeHost) -> None:
    api = new_api(host)
    shape, data = classes_of(infer(api, [{"name": "y", "parameters": {"classification": 3}}]))
    # ties keep the lower index first; no labels parcel: "value:index"
    assert shape == [3] and data == ["3.25:2", "3.25:3", "1:4"]
    shape, data = classes_of(infer(api, [{"name": "y", "parameters": {"classification": 50}}]))
    assert shape == [5] and [d.split(":")[1] for d in data] == ["2", "3", "4", "0", "1"]  # k past the classes
    shape, data = classes_of(infer(api, [{"name": "z", "parameters": {"classification": 2}}]))
    assert shape == [2, 2] and data == ["7:2", "1:0", "9:0", "0:1"]  # one row per index of the first dimension
    host.on(MLINFERENCE, METADATA, {**META, "labels": ["zero", "one", "two", "three", "four"]})
    api = new_api(host)  # an empty metadata cache
    r = infer(api, [{"name": "y", "parameters": {"classification": 2, "binary_data": True}}])
    header, data = split_binary(r)
    assert header["outputs"][0]["shape"] == [2] and header["outputs"][0]["parameters"]["binary_data_size"] == len(data)
    strings, at = [], 0
    while at < len(data):  # BYTES in binary: a 4-byte little-endian length, then the bytes
        (n,), at = struct.unpack_from("<I", data, at), at + 4
        strings.append(data[at:at + n].decode())
        at += n
    assert strings == ["3.25:2:two", "3.25:3:three"]


def test_scripted_provider_repository_index_states_and_filter(host: FakeHost) -> None:
    api = new_api(host)
    index = http(api, "POST", "/v2/repository/index").json()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        ("a", "1", "READY"), ("b", "1", "LOADING"), ("c", "1", "UNAVAILABLE"), ("d", "1", "UNAVAILABLE")]
    assert "bad file" in index[2]["reason"] and "unloaded" in index[3]["reason"]
    ready = http(api, "POST", "/v2/repository/index", json.dumps({"ready": True}).encode()).json()
    assert [m["name"] for m in ready] == ["a"]
    bad = http(api, "POST", "/v2/repository/index", b'{"ready": "yes"}')
    assert bad.status == 400 and bad.json()["error"].startswith("bad repository request")
    assert http(api, "GET", "/v2/repository/index").status == 405


def test_scripted_provider_server_ready_waits_for_loading_not_for_unloaded(host: FakeHost) -> None:
    api = new_api(host)
    r = http(api, "GET", "/v2/health/ready")
    assert r.status == 503 and "b (loading)" in r.json()["error"] and "d (" not in r.json()["error"]


def test_scripted_provider_load_and_unload(host: FakeHost) -> None:
    host.on(MLINFERENCE, "MlInference.UnloadModel", {})
    host.on(MLINFERENCE, "MlInference.LoadModel", {"error": {"contextNotFoundError": "unknown model 'q'"}})
    api = new_api(host)
    r = http(api, "POST", "/v2/repository/models/m/unload")
    assert (r.status, r.body) == (200, b"") and host.calls[-1].request == {"model": "m"}
    r = http(api, "POST", "/v2/repository/models/q/load")
    assert r.status == 400 and r.json()["error"] == "load failed: contextNotFoundError: unknown model 'q'"
    assert http(api, "GET", "/v2/repository/models/q/load").status == 405


def test_scripted_provider_a_parcel_without_names_shows_the_engines(host: FakeHost) -> None:
    bare = {k: v for k, v in META.items() if k not in ("input_name", "output_name", "inputs", "outputs")}
    host.on(MLINFERENCE, METADATA, {**bare, "inputs": META["inputs"][:1], "outputs": META["outputs"][:1]})
    meta = http(new_api(host), "GET", "/v2/models/m").json()
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [("x", [1, 3])]  # the parcel's dims, the engine's name
    assert [t["name"] for t in meta["outputs"]] == ["y"]
    host.on(MLINFERENCE, METADATA, bare)  # a provider that lists nothing: Waft's placeholders
    meta = http(new_api(host), "GET", "/v2/models/m").json()
    assert [t["name"] for t in meta["inputs"]] == ["input0"] and [t["name"] for t in meta["outputs"]] == ["output0"]


def test_scripted_provider_a_load_still_going_on_is_503_not_200(host: FakeHost) -> None:
    """The provider answers LoadModel after at most 3/4 of the RPC timeout; a model still loading then (b in
    ListModels) is not reported loaded: Triton's 200 means ready."""
    host.on(MLINFERENCE, "MlInference.LoadModel", {})
    api = new_api(host)
    r = http(api, "POST", "/v2/repository/models/b/load")
    assert r.status == 503 and r.json()["code"] == "model loading", (r.status, r.body)
    assert r.json()["error"].startswith("model loading: model b is still loading (its load goes on)")
    assert "GET /v2/models/b/ready" in r.json()["error"]
    assert (http(api, "POST", "/v2/repository/models/a/load").status, host.ops()[-1][2]) == (200, LIST)


def test_scripted_provider_state_routes_ask_afresh_after_another_instance_unloads(host: FakeHost) -> None:
    """Two instances of the API actor (a deployment runs several): one unloads m, the other must not answer
    from the metadata it cached before, on any route that says whether m is there."""
    host.on(MLINFERENCE, "MlInference.UnloadModel", {})
    first, second = new_api(host), new_api(host)
    routes = ("/v2/models/m", "/v2/models/m/ready", "/v2/models/m/config", "/v2/models/m/stats")
    for path in routes[:3]:
        assert http(second, "GET", path).status == 200, path  # cached by the second instance
    assert http(first, "POST", "/v2/repository/models/m/unload").status == 200
    gone = "model 'm' was unloaded; load it again (POST /v2/repository/models/m/load)"
    host.on(MLINFERENCE, METADATA, {"error": {"contextNotFoundError": gone}})
    for path in routes:
        r = http(second, "GET", path)
        assert r.status == 404, (path, r.status, r.body)
        # installed, only unloaded: the message says how to load it, not how to install it
        assert r.json() == {"error": f"model unloaded: contextNotFoundError: {gone}", "code": "model unloaded"}, path
