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
