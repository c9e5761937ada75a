"""The wire types: every value type and flag round-trips, and bad tensors fail with corruptInputTensor."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from waft.interfaces.mlinference import (
    CORRUPT_INPUT_TENSOR,
    FLAG_BIG_ENDIAN,
    FLAG_COLUMN_MAJOR,
    VALUE_TYPES,
    InferenceInput,
    InferenceOutput,
    ModelError,
    Normalize,
    Tensor,
    WireError,
    status_error,
    value_type_name,
)


@pytest.mark.parametrize("name", sorted(VALUE_TYPES))
@pytest.mark.parametrize("flags", [0, FLAG_COLUMN_MAJOR, FLAG_BIG_ENDIAN, FLAG_COLUMN_MAJOR | FLAG_BIG_ENDIAN])
def test_every_value_type_and_flag_round_trips(name, flags):
    dtype = VALUE_TYPES[name]
    array = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype) if dtype == np.bool_ else \
        np.arange(24).reshape(2, 3, 4).astype(dtype)
    tensor = Tensor.from_numpy(array, flags=flags)
    assert tensor.value_types == [name] and tensor.dimensions == [2, 3, 4] and tensor.flags == flags
    wire = msgpack.unpackb(msgpack.packb(tensor.to_wire(), use_bin_type=True), raw=False)
    back = Tensor.from_wire(wire).to_numpy()
    assert back.dtype == dtype and back.flags.c_contiguous
    np.testing.assert_array_equal(back, array)


def test_flag_bits_mean_what_the_original_constants_say():
    array = np.array([[1, 2, 3], [4, 5, 6]], np.uint16)
    assert Tensor.from_numpy(array, flags=FLAG_BIG_ENDIAN).data[:2] == b"\x00\x01"
    assert Tensor.from_numpy(array).data[:2] == b"\x01\x00"
    column = Tensor.from_numpy(array, flags=FLAG_COLUMN_MAJOR)
    assert np.frombuffer(column.data, "<u2").tolist() == [1, 4, 2, 5, 3, 6]


@pytest.mark.parametrize("spelling, canonical", [("F32", "ValueF32"), ("f32", "ValueF32"), ("valueF32", "ValueF32"),
                                                 ("ValueS8", "ValueI8"), ("i64", "ValueI64"), ("bool", "ValueBool")])
def test_value_type_spellings(spelling, canonical):
    assert value_type_name(spelling) == canonical


@pytest.mark.parametrize("tensor, fragment", [
    (Tensor([1, 4], ["ValueF32"], 0, b"\x00" * 15), "data is 15 bytes but dimensions [1, 4] of ValueF32 need 16"),
    (Tensor([], ["ValueF32"], 0, b""), "dimensions are empty"),
    (Tensor([1, 0], ["ValueF32"], 0, b""), "must each be 1"),
    (Tensor([4], ["ValueC64"], 0, b"\x00" * 16), "unsupported value type 'ValueC64'"),
    (Tensor([4], [], 0, b"\x00" * 16), "valueTypes is empty"),
    (Tensor([2, 2], ["ValueF32", "ValueU8"], 0, b"\x00" * 16), "mixed valueTypes"),
    (Tensor([4], ["ValueF32"], 4, b"\x00" * 16), "reserved bits"),
    (Tensor([2], ["ValueBool"], 0, b"\x00\x02"), "only bytes 0 and 1"),
])
def test_bad_tensors_are_corrupt_input(tensor, fragment):
    with pytest.raises(ModelError) as info:
        tensor.to_numpy()
    assert info.value.variant == CORRUPT_INPUT_TENSOR and fragment in info.value.message


def test_size_limit_is_checked_before_the_data():
    with pytest.raises(ModelError, match="over the limit of 1000"):
        Tensor([1000], ["ValueF32"], 0, b"").to_numpy(max_bytes=1000)


def test_malformed_messages_are_wire_errors():
    for payload in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"tensor": {}}),
                    msgpack.packb({"model": "m"}), msgpack.packb({"model": "m", "tensor": {"dimensions": "x"}})):
        with pytest.raises(WireError):
            InferenceInput.decode(payload)


def test_input_accepts_str_and_list_data_as_the_0x_host_and_serde_json_wrote():
    wire = {"model": "m", "tensor": {"dimensions": [2], "valueTypes": ["ValueU8"], "data": [7, 9]}, "index": 0}
    assert InferenceInput.decode(msgpack.packb(wire)).tensor.to_numpy().tolist() == [7, 9]


def test_output_status_forms():
    ok = InferenceOutput(Tensor.from_numpy(np.ones((1, 2), np.float32)))
    assert msgpack.unpackb(ok.encode())["result"] == {"success": None}
    failed = InferenceOutput.decode(InferenceOutput.failure(ModelError("overloaded", "busy")).encode())
    assert failed.error is not None and (failed.error.variant, failed.error.message) == ("overloaded", "busy")
    assert failed.tensor.dimensions == [] and failed.tensor.value_types == ["ValueF32"]
    assert status_error("Success") is None
    serde = status_error({"Error": {"ContextNotFoundError": "x"}})
    assert serde is not None and serde.variant == "contextNotFoundError"


# ------------------------------------------------------------------- normalize (Waft's u8 pixels on the wire)

def _normalize_request(pixels: np.ndarray, normalize: dict) -> bytes:
    return msgpack.packb({"model": "m", "tensor": Tensor.from_numpy(pixels).to_wire(), "normalize": normalize})


def test_normalize_round_trips_and_feeds_f32_rounded_as_single_precision():
    pixels = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(1, 2, 3, 5) * 8
    wire = {"mean": [127.0, 0.1], "std": [128.0, 0.3], "axis": 1}
    request = InferenceInput.decode(_normalize_request(pixels, wire))
    assert request.normalize == Normalize((127.0, float(np.float32(0.1))), (128.0, float(np.float32(0.3))), 1)
    assert InferenceInput.decode(request.encode()) == request
    got = request.to_numpy()
    assert got.dtype == np.float32 and got.shape == pixels.shape
    # independent reference: one element at a time, each step a float32 scalar operation
    for index in np.ndindex(pixels.shape):
        c = index[1]
        want = (np.float32(pixels[index]) - np.float32(wire["mean"][c])) / np.float32(wire["std"][c])
        assert got[index].view(np.uint32) == np.float32(want).view(np.uint32), index


def test_no_normalize_leaves_the_tensor_as_sent():
    pixels = np.arange(12, dtype=np.uint8).reshape(1, 12)
    request = InferenceInput.decode(InferenceInput("m", Tensor.from_numpy(pixels)).encode())
    assert request.normalize is None and request.to_numpy().dtype == np.uint8


@pytest.mark.parametrize("wire, fragment", [
    ("x", "must be a map"),
    ({"mean": [1.0], "std": [1.0]}, "axis"),
    ({"mean": [1.0], "std": [1.0], "axis": -1}, "axis"),
    ({"mean": [1.0], "std": [1.0], "axis": True}, "axis"),
    ({"mean": [], "std": [], "axis": 1}, "non-empty list"),
    ({"mean": ["a"], "std": [1.0], "axis": 1}, "mean"),
    ({"mean": [1.0], "std": [True], "axis": 1}, "std"),
    ({"mean": [1.0, 2.0], "std": [1.0], "axis": 1}, "2 means but 1 stds"),
    ({"mean": [1.0], "std": [0.0], "axis": 1}, "non-zero"),
    ({"mean": [float("nan")], "std": [1.0], "axis": 1}, "finite"),
    ({"mean": [1.0], "std": [1e300], "axis": 1}, "finite"),  # overflows f32
])
def test_bad_normalize_is_a_wire_error(wire, fragment):
    with pytest.raises(WireError, match=fragment):
        InferenceInput.decode(_normalize_request(np.zeros((1, 1), np.uint8), wire))


@pytest.mark.parametrize("pixels, wire, fragment", [
    (np.zeros((1, 3), np.float32), {"mean": [0.0] * 3, "std": [1.0] * 3, "axis": 1}, "ValueU8 pixels"),
    (np.zeros((1, 3), np.uint8), {"mean": [0.0] * 3, "std": [1.0] * 3, "axis": 2}, "on axis 2"),
    (np.zeros((1, 4), np.uint8), {"mean": [0.0] * 3, "std": [1.0] * 3, "axis": 1}, "3 channels"),
])
def test_normalize_that_does_not_fit_the_tensor_is_corrupt_input(pixels, wire, fragment):
    request = InferenceInput.decode(_normalize_request(pixels, wire))
    with pytest.raises(ModelError, match=fragment) as info:
        request.to_numpy()
    assert info.value.variant == CORRUPT_INPUT_TENSOR


def test_the_size_limit_bounds_what_the_model_is_fed():
    """u8 pixels become four times their bytes in f32: the limit applies to the f32."""
    pixels = np.zeros((1, 3, 10, 10), np.uint8)
    request = InferenceInput.decode(_normalize_request(pixels, {"mean": [0.0] * 3, "std": [1.0] * 3, "axis": 1}))
    assert request.to_numpy(max_bytes=1200).nbytes == 1200
    with pytest.raises(ModelError, match="over the limit"):
        request.to_numpy(max_bytes=1199)
