"""The post-processor actor (`Imagenet.Postprocess`) in the waPC binding, held to numpy.

Reference: softmax in float64 with the maximum subtracted, rounded to float32 (the actor does the same
in C, so values agree to an ulp and the order exactly), ranked best first with NaN last and ties by
the lower class index (a stable sort).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from api_support import new_postprocessor, pack, postprocess, tensor_wire

from waft.host.wapc import GuestError, WapcInstance

SUCCESS = {"success": None}


@pytest.fixture(scope="module")
def inst() -> WapcInstance:
    return new_postprocessor()


def reference(scores: np.ndarray, *, probabilities: bool = False) -> np.ndarray:
    """float32 probabilities as the contract defines them (NaN-safe, inf-aware softmax)."""
    v = scores.astype(np.float64).ravel()
    if probabilities:
        return v.astype(np.float32)
    numbers = ~np.isnan(v)
    out = np.full(v.shape, np.nan)
    if not numbers.any():
        return out.astype(np.float32)
    top = v[numbers].max()
    if top == np.inf:
        out[numbers] = np.where(v[numbers] == np.inf, 1.0 / np.count_nonzero(v == np.inf), 0.0)
    elif top == -np.inf:
        out[numbers] = 1.0 / np.count_nonzero(numbers)
    else:
        e = np.exp(v[numbers] - top)
        out[numbers] = e / e.sum()
    return out.astype(np.float32)


def ranking(p: np.ndarray) -> list[int]:
    """Best first; NaN last; ties by index."""
    return sorted(range(p.size), key=lambda i: (bool(np.isnan(p[i])), 0.0 if np.isnan(p[i]) else -float(p[i]), i))


def request(scores: np.ndarray, **extra: Any) -> dict[str, Any]:
    wire_extra = {k: v for k, v in extra.items() if k not in ("dims", "flags", "value_type")}
    tensor = tensor_wire(scores, dims=extra.get("dims"), flags=extra.get("flags", 0),
                         value_type=extra.get("value_type"))
    return {"result": SUCCESS, "tensor": tensor, **wire_extra}


def check(inst: WapcInstance, scores: np.ndarray, *, k: int | None = None, labels: list[str] | None = None,
          probabilities: bool = False, **extra: Any) -> list[dict[str, Any]]:
    req = request(scores, **extra)
    if k is not None:
        req["topK"] = k
    if labels is not None:
        req["labels"] = labels
    if probabilities:
        req["probabilities"] = True
    reply = postprocess(inst, req)
    assert "error" not in reply, reply
    want_p = reference(scores, probabilities=probabilities)
    order = ranking(want_p)[: 5 if k is None else k]
    matches = reply["matches"]
    assert len(matches) == len(order)
    assert all(set(m) == {"label", "probability"} for m in matches)
    want_labels = [labels[i] if labels is not None and i < len(labels) else str(i) for i in order]
    assert [m["label"] for m in matches] == want_labels
    got = np.array([m["probability"] for m in matches], dtype=np.float64)
    want = want_p[order].astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-6, atol=0)
    for m in matches:  # probabilities travel as msgpack float32: exactly representable
        assert math.isnan(m["probability"]) or float(np.float32(m["probability"])) == m["probability"]
    return matches


def logits(n: int, seed: int = 0, scale: float = 3.0, dtype: Any = np.float32) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=n) * scale).astype(dtype)


def test_thousand_imagenet_logits_default_top5(inst: WapcInstance) -> None:
    x = logits(1000).reshape(1, 1000)
    matches = check(inst, x)
    assert len(matches) == 5
    probs = [m["probability"] for m in matches]
    assert probs == sorted(probs, reverse=True)


@pytest.mark.parametrize("shape", [(1,), (2,), (10,), (1, 10), (1000,), (1, 1000), (1, 1000, 1, 1), (1, 1002),
                                   (21843,), (1, 1, 7)])
def test_any_class_count_and_row_shape(inst: WapcInstance, shape: tuple[int, ...]) -> None:
    x = logits(int(np.prod(shape)), seed=len(shape)).reshape(shape)
    check(inst, x, k=min(7, x.size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("flags", [0, 2, 1, 3])
def test_value_types_and_byte_order(inst: WapcInstance, dtype: Any, flags: int) -> None:
    x = logits(300, seed=5, dtype=dtype).reshape(1, 300)
    check(inst, x, k=10, flags=flags)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantized_integer_scores(inst: WapcInstance, dtype: Any) -> None:
    """A quantized model's raw u8/i8 scores are numbers like any other (the provider dequantizes TF Lite's)."""
    info = np.iinfo(dtype)
    x = np.random.default_rng(3).integers(info.min, info.max, 10, endpoint=True).astype(dtype).reshape(1, 10)
    check(inst, x, k=10)
    check(inst, x, k=10, probabilities=True)


def test_tf_lite_1001_classes_background_first(inst: WapcInstance) -> None:
    """TF Lite's ImageNet models answer 1001 probabilities, background first: sorted without a softmax (as the
    original did) and named by the 1000 ImageNet labels one place down."""
    p = np.random.default_rng(4).dirichlet(np.ones(1001)).astype(np.float32).reshape(1, 1001)
    p[0, 0] = 0.9  # background wins: it is named so
    labels = [f"class {i}" for i in range(1000)]
    got = postprocess(inst, {**request(p), "topK": 3, "labels": labels})["matches"]
    order = np.argsort(-p.ravel(), kind="stable")[:3]
    assert [m["label"] for m in got] == ["background" if i == 0 else f"class {i - 1}" for i in order]
    assert [m["probability"] for m in got] == [float(p.ravel()[i]) for i in order]
    with_background = ["background", *labels]  # a 1001-line list is used as it is
    got = postprocess(inst, {**request(p), "topK": 3, "labels": with_background})["matches"]
    assert [m["label"] for m in got] == [with_background[i] for i in order]


@pytest.mark.parametrize("name", ["ValueF32", "valueF32", "F32", "f32"])
def test_value_type_spellings(inst: WapcInstance, name: str) -> None:
    check(inst, logits(20), value_type=name)


def test_f16_specials_decode_exactly(inst: WapcInstance) -> None:
    # subnormal, smallest normal, max, negative zero, one: with probabilities=True they pass through
    x = np.array([np.float16(6e-8), np.float16(6.104e-5), np.float16(65504), np.float16(-0.0), np.float16(1)],
                 dtype=np.float16)
    matches = check(inst, x, k=5, probabilities=True)
    assert [m["label"] for m in matches] == ["2", "4", "1", "0", "3"]


def test_labels_from_the_request(inst: WapcInstance) -> None:
    labels = [f"n{i:08d} class {i}, synonym é" for i in range(1000)]
    matches = check(inst, logits(1000, seed=2).reshape(1, 1000), labels=labels)
    assert all(m["label"].startswith("n") for m in matches)


def test_short_label_list_falls_back_to_indices(inst: WapcInstance) -> None:
    x = np.arange(10, dtype=np.float32)  # best is 9, past the 3 labels
    matches = check(inst, x, k=10, labels=["a", "b", "c"])
    assert [m["label"] for m in matches] == ["9", "8", "7", "6", "5", "4", "3", "c", "b", "a"]


def test_already_probabilities_skip_softmax(inst: WapcInstance) -> None:
    p = np.random.default_rng(3).dirichlet(np.ones(1001)).astype(np.float32)
    matches = check(inst, p, probabilities=True)
    assert matches[0]["probability"] == float(p.max())


@pytest.mark.parametrize("k", [0, 1, 2, 5, 999, 1000, 1001, 4294967295])
def test_k_edge_cases(inst: WapcInstance, k: int) -> None:
    x = logits(1000, seed=4)
    matches = check(inst, x, k=min(k, 1000))
    reply = postprocess(inst, {**request(x), "topK": k})
    assert reply["matches"] == matches  # k above the class count is clamped
    assert len(matches) == min(k, 1000)


def test_top_k_missing_or_nil_is_five(inst: WapcInstance) -> None:
    x = logits(50)
    assert len(postprocess(inst, {**request(x), "topK": None})["matches"]) == 5
    assert len(postprocess(inst, request(x))["matches"]) == 5


def test_whole_ranking_for_every_k_matches_a_stable_sort(inst: WapcInstance) -> None:
    x = np.round(logits(64, seed=9), 1)  # rounding makes many ties
    for k in range(65):
        check(inst, x, k=k)


def test_ties_rank_the_lower_index_first(inst: WapcInstance) -> None:
    x = np.zeros(8, dtype=np.float32)
    x[5] = x[2] = 1.0
    matches = check(inst, x, k=8)
    assert [m["label"] for m in matches] == ["2", "5", "0", "1", "3", "4", "6", "7"]


def test_large_logits_do_not_overflow(inst: WapcInstance) -> None:
    x = np.array([1000.0, 999.0, -1000.0, 88.0, 3e38], dtype=np.float32)
    matches = check(inst, x, k=5)
    assert matches[0] == {"label": "4", "probability": 1.0}
    x = np.array([1000.0, 999.0, 998.0], dtype=np.float32)  # naive exp() overflows to inf/inf = NaN
    matches = check(inst, x, k=3)
    assert all(math.isfinite(m["probability"]) for m in matches)
    assert abs(sum(m["probability"] for m in matches) - 1.0) < 1e-6


def test_nan_scores_sort_last_and_do_not_poison_the_rest(inst: WapcInstance) -> None:
    x = logits(100, seed=6)
    x[[3, 50, 99]] = np.nan
    matches = check(inst, x, k=100)
    assert [m["label"] for m in matches[-3:]] == ["3", "50", "99"]
    assert all(math.isnan(m["probability"]) for m in matches[-3:])
    assert all(math.isfinite(m["probability"]) for m in matches[:-3])
    assert abs(sum(m["probability"] for m in matches[:-3]) - 1.0) < 1e-5


def test_all_nan(inst: WapcInstance) -> None:
    x = np.full(6, np.nan, dtype=np.float32)
    matches = check(inst, x, k=3)
    assert [m["label"] for m in matches] == ["0", "1", "2"]
    check(inst, x, k=6, probabilities=True)


def test_infinities_take_the_limit(inst: WapcInstance) -> None:
    x = np.array([0.0, np.inf, 5.0, np.inf, np.nan, -np.inf], dtype=np.float32)
    matches = check(inst, x, k=6)
    assert [(m["label"], m["probability"]) for m in matches[:2]] == [("1", 0.5), ("3", 0.5)]
    x = np.full(4, -np.inf, dtype=np.float32)
    matches = check(inst, x, k=4)
    assert [m["probability"] for m in matches] == [0.25] * 4
    check(inst, np.array([np.inf, -np.inf, np.nan], dtype=np.float32), k=3, probabilities=True)


def test_original_status_forms_are_read(inst: WapcInstance) -> None:
    x = logits(10)
    for status in ("Success", "success", None, {"Success": None}):
        reply = postprocess(inst, {**request(x), "result": status})
        assert len(reply["matches"]) == 5, status
    reply = postprocess(inst, {"tensor": request(x)["tensor"]})  # result omitted: success
    assert len(reply["matches"]) == 5


def error_of(inst: WapcInstance, req: dict[str, Any]) -> str:
    reply = postprocess(inst, req)
    assert reply["matches"] == [], reply
    assert isinstance(reply["error"], str)
    return reply["error"]


def test_error_status_is_reported_in_band(inst: WapcInstance) -> None:
    req = {**request(logits(10)), "result": {"error": {"onnxError": "the graph exploded"}}}
    text = error_of(inst, req)
    assert "onnxError" in text and "the graph exploded" in text
    assert "onnxError" in error_of(inst, {**req, "result": {"Error": {"OnnxError": "x"}}}).replace("Onnx", "onnx")


@pytest.mark.parametrize("tensor, words", [
    ({"dimensions": [1, 2], "valueTypes": ["ValueU16"], "flags": 0, "data": b"\0\1\2\3"}, "unsupported value type"),
    ({"dimensions": [1, 4], "valueTypes": ["ValueQ7"], "flags": 0, "data": b"\0" * 16}, "ValueQ7"),
    ({"dimensions": [1, 4], "valueTypes": ["ValueF32", "ValueF64"], "flags": 0, "data": b"\0" * 16}, "mixed"),
    ({"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0, "data": b"\0" * 15}, "15 bytes"),
    ({"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0, "data": b""}, "size mismatch"),
    ({"dimensions": [2, 4], "valueTypes": ["ValueF32"], "flags": 0, "data": b"\0" * 32}, "batch"),
    ({"dimensions": [], "valueTypes": ["ValueF32"], "flags": 0, "data": b"\0" * 4}, "no dimensions"),
    ({"dimensions": [1, 0], "valueTypes": ["ValueF32"], "flags": 0, "data": b""}, "dimension is 0"),
    ({"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 4, "data": b"\0" * 16}, "reserved"),
    ({"dimensions": [4294967295, 4294967295], "valueTypes": ["ValueF32"], "flags": 0, "data": b"\0" * 4}, "batch"),
    ({"dimensions": [1] * 17, "valueTypes": ["ValueF32"], "flags": 0, "data": b"\0" * 4}, "16 dimensions"),
])
def test_bad_tensors_are_in_band_errors(inst: WapcInstance, tensor: dict[str, Any], words: str) -> None:
    assert words in error_of(inst, {"result": SUCCESS, "tensor": tensor})


def test_missing_tensor_and_bad_fields(inst: WapcInstance) -> None:
    assert "no tensor" in error_of(inst, {"result": SUCCESS})
    assert "labels" in error_of(inst, {**request(logits(4)), "labels": ["a", 3]})
    assert error_of(inst, {**request(logits(4)), "topK": -1})
    assert error_of(inst, {**request(logits(4)), "topK": "five"})
    assert error_of(inst, {**request(logits(4)), "tensor": {"dimensions": "x"}})


def test_not_a_map_is_a_guest_error(inst: WapcInstance) -> None:
    for payload in (b"", b"\xc1", pack([1, 2]), pack("hello")):
        with pytest.raises(GuestError):
            inst.call("Imagenet.Postprocess", payload)


def test_truncations_and_garbage_never_trap(inst: WapcInstance) -> None:
    payload = pack({**request(logits(40)), "labels": [f"l{i}" for i in range(40)], "topK": 7})
    rng = np.random.default_rng(11)
    for cut in range(len(payload)):
        try:
            inst.call("Imagenet.Postprocess", payload[:cut])
        except GuestError:
            pass
    for _ in range(300):
        mutated = bytearray(payload)
        for pos in rng.integers(0, len(payload), size=4):
            mutated[pos] = int(rng.integers(0, 256))
        try:
            msgpack.unpackb(inst.call("Imagenet.Postprocess", bytes(mutated)), raw=True)  # labels pass verbatim
        except GuestError:
            pass
    check(inst, logits(40))  # the same instance still answers correctly


def test_health(inst: WapcInstance) -> None:
    assert msgpack.unpackb(inst.call("Actor.HealthRequest", b"\x80")) == {"healthy": True, "message": "ok"}
