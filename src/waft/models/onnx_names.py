"""The first real input and the first output of an ONNX graph, read straight from the protobuf wire format.

Why not `onnx.load`: `waft models add` runs on hosts that install only the core, where the onnx package
is a build tool that is not there. Four messages matter (ModelProto.graph, GraphProto.input/output/
initializer, and their `name`s) and the wire format is simple to walk: every other field, the weights
included, is skipped by its length without being decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from waft.models import ModelsError

# Field numbers from onnx.proto (stable since IR version 1).
MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
GRAPH_INPUT = 11
GRAPH_OUTPUT = 12
VALUE_INFO_NAME = 1
TENSOR_NAME = 8

_VARINT, _FIXED64, _DELIMITED, _FIXED32 = 0, 1, 2, 5


class OnnxFormatError(ModelsError, ValueError):
    """The bytes are not a well-formed ONNX ModelProto with a graph."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The base-128 varint at `pos` (at most 10 bytes): its value and the position after it."""
    end = pos
    while end < len(buf) and buf[end] & 0x80 and end - pos < 9:
        end += 1
    if end >= len(buf) or buf[end] & 0x80:
        raise OnnxFormatError("truncated or overlong varint")
    return sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(buf[pos:end + 1])), end + 1


def _delimited(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """The length-delimited fields of one message, as (field number, payload); scalars are skipped."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, pos = _varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
        elif wire == _DELIMITED:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise OnnxFormatError(f"field {number} runs past the end of its message")
            yield number, buf[pos:pos + length]
            pos += length
        else:
            raise OnnxFormatError(f"field {number} has wire type {wire}, which ONNX never writes")
    if pos != len(buf):
        raise OnnxFormatError("a fixed-width field runs past the end of its message")


def _name(message: memoryview, field: int) -> str:
    """The message's string field `field` (the empty string when absent, as protobuf reads it)."""
    for number, value in _delimited(message):
        if number == field:
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise OnnxFormatError("a name is not UTF-8") from None
    return ""


def graph_io_names(data: bytes) -> tuple[str | None, str | None]:
    """(first graph input that is not an initializer, first graph output); None where the graph has none.

    Older exporters list the weights among the inputs too (IR < 4), hence the initializer filter.
    """
    graph = next((value for number, value in _delimited(memoryview(data)) if number == MODEL_GRAPH), None)
    if graph is None:
        raise OnnxFormatError("no graph in the model")
    inputs: list[str] = []
    outputs: list[str] = []
    initializers: set[str] = set()
    for number, value in _delimited(graph):
        if number == GRAPH_INPUT:
            inputs.append(_name(value, VALUE_INFO_NAME))
        elif number == GRAPH_OUTPUT:
            outputs.append(_name(value, VALUE_INFO_NAME))
        elif number == GRAPH_INITIALIZER:
            initializers.add(_name(value, TENSOR_NAME))
    real = [name for name in inputs if name not in initializers]
    return (real[0] if real else None), (outputs[0] if outputs else None)


def model_io_names(path: Path) -> tuple[str | None, str | None]:
    """`graph_io_names` of a model file."""
    return graph_io_names(path.read_bytes())
