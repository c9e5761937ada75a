"""The `wasmcloud:mlinference` contract: the one Python source of its wire, for the provider, the
dashboard, the API actor's tests and the benchmarks.

Only numpy and msgpack are imported here, never onnxruntime or tensorflow, so anything in the project
can encode a request or read an answer cheaply.

Wire shapes (msgpack maps, camelCase keys as in the smithy model, `docs/interfaces.md`):

- `Tensor{dimensions: [u32], valueTypes: [str], flags: u8, data: bin}`
- `InferenceInput{model: str, tensor: Tensor, index: u32, normalize?: Normalize}`
- `InferenceOutput{result: {"success": null} | {"error": {<variant>: <message>}}, tensor: Tensor}`

Normalize (Waft's own, between its API actor and its provider; absent from the original and ignored by
anything that does not know it): `{mean: [f32], std: [f32], axis: u32}`. The tensor is then u8 image
pixels and the provider feeds the model `(x - mean[c]) / std[c]` in f32, `c` the index along `axis`:
the same f32 operations the pre-processor would have done, so the result is bit for bit the same, while
a quarter of the bytes is hashed, copied and sent.

Flags (the original's `ml/rust/src/lib.rs` constants, kept bit for bit):

- bit 0 (value 1, `FLAG_COLUMN_MAJOR`): data is in column-major (Fortran) order; clear = row-major.
- bit 1 (value 2, `FLAG_BIG_ENDIAN`): every element is big-endian; clear = little-endian.
  Other bits are reserved and rejected, so a client using a future flag learns it is not understood.
The provider answers in the byte order and layout the request used.

Errors: the original's eight MlError variants, plus two that Waft adds and the original never had
(its predict turned every failure, "still loading" included, into `contextNotFoundError`):

- `modelLoading`: the model is still being fetched or initialised; try again shortly (HTTP 503).
- `overloaded`: the model's concurrency limit and queue are full; back off (HTTP 429).

Model status (Waft; the original had no way to ask): one map per model, the entries of
`MlInference.ListModels` and of the provider's health details (`details.models`):
`{name, bindleId, status: "ready"|"loading"|"failed", reason?, error?: {variant: message},
retry?: {attempt, attempts, delaySeconds, error}, retrying?, graphEncoding?, inputs?, outputs?, warnings?}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack
import numpy as np

from waft.errors import WaftError

CONTRACT_ID = "wasmcloud:mlinference"
OP_PREDICT = "MlInference.Predict"
OP_LIST_MODELS = "MlInference.ListModels"
OP_GET_METADATA = "MlInference.GetMetadata"
#: Waft's, behind Triton's model repository extension: `{model}` -> `{}` or `{"error": {variant: message}}`.
#: Unload frees the caller's route (the model itself once no other actor uses it) and ListModels then lists the
#: route as `status: "unloaded"`; load starts loading it again (a failed model too) and answers once it is loaded
#: or failed, or, when that takes longer than most of the caller's RPC timeout, while it is still loading.
OP_LOAD_MODEL = "MlInference.LoadModel"
OP_UNLOAD_MODEL = "MlInference.UnloadModel"

FLAG_COLUMN_MAJOR = 0x01
FLAG_BIG_ENDIAN = 0x02
KNOWN_FLAGS = FLAG_COLUMN_MAJOR | FLAG_BIG_ENDIAN

# ----------------------------------------------------------------------------------------- value types

#: Canonical wire name -> numpy dtype (native byte order). These are the names we write.
VALUE_TYPES: dict[str, np.dtype[Any]] = {
    "ValueU8": np.dtype(np.uint8),
    "ValueI8": np.dtype(np.int8),
    "ValueU16": np.dtype(np.uint16),
    "ValueI16": np.dtype(np.int16),
    "ValueU32": np.dtype(np.uint32),
    "ValueI32": np.dtype(np.int32),
    "ValueU64": np.dtype(np.uint64),
    "ValueI64": np.dtype(np.int64),
    "ValueF16": np.dtype(np.float16),
    "ValueF32": np.dtype(np.float32),
    "ValueF64": np.dtype(np.float64),
    "ValueBool": np.dtype(np.bool_),
}
#: Names we also read: the original smithy spelled signed types `ValueS8…`, and `TryFrom<&str>` took `f32`.
_ALIASES = {"ValueS8": "ValueI8", "ValueS16": "ValueI16", "ValueS32": "ValueI32", "ValueS64": "ValueI64"}
_BY_DTYPE = {dtype: name for name, dtype in VALUE_TYPES.items()}


def value_type_name(name: str) -> str:
    """The canonical name for any accepted spelling (`ValueF32`, `valueF32`, `F32`, `f32`, `ValueS8`).

    Raises ModelError(corruptInputTensor) for a name we cannot map, listing the ones we can.
    """
    text = str(name)
    short = text[5:] if text[:5].lower() == "value" else text
    key = "ValueBool" if short.lower() == "bool" else "Value" + short.upper()
    key = _ALIASES.get(key, key)
    if key not in VALUE_TYPES:
        raise ModelError(CORRUPT_INPUT_TENSOR, f"unsupported value type {text!r}; supported: {', '.join(VALUE_TYPES)}")
    return key


def dtype_of(name: str) -> np.dtype[Any]:
    return VALUE_TYPES[value_type_name(name)]


def name_of(dtype: np.dtype[Any] | type) -> str:
    """The wire name of a numpy dtype (byte order ignored)."""
    native = np.dtype(dtype).newbyteorder("=")
    try:
        return _BY_DTYPE[native]
    except KeyError:
        raise ModelError(RUNTIME_ERROR, f"the model produced dtype {native}, which has no wire value type") from None


# ----------------------------------------------------------------------------------------------- errors

INVALID_MODEL = "invalidModel"
INVALID_ENCODING = "invalidEncoding"
CORRUPT_INPUT_TENSOR = "corruptInputTensor"
RUNTIME_ERROR = "runtimeError"
OPEN_VINO_ERROR = "openVinoError"
ONNX_ERROR = "onnxError"
TENSORFLOW_ERROR = "tensorflowError"
CONTEXT_NOT_FOUND = "contextNotFoundError"
#: Waft additions (not in the original MlError union).
MODEL_LOADING = "modelLoading"
OVERLOADED = "overloaded"

ML_ERROR_VARIANTS = (INVALID_MODEL, INVALID_ENCODING, CORRUPT_INPUT_TENSOR, RUNTIME_ERROR, OPEN_VINO_ERROR,
                     ONNX_ERROR, TENSORFLOW_ERROR, CONTEXT_NOT_FOUND, MODEL_LOADING, OVERLOADED)

#: How the API actor maps each variant to HTTP (design: Conventions). What each means here:
HTTP_STATUS = {
    CONTEXT_NOT_FOUND: 404,     # unknown model for this actor's link
    CORRUPT_INPUT_TENSOR: 400,  # tensor inconsistent in itself, or not what the model declares
    INVALID_ENCODING: 400,      # unsupported graph encoding / undecodable input (pre-processor)
    MODEL_LOADING: 503,         # not ready yet
    OVERLOADED: 429,            # concurrency limit and queue full
    INVALID_MODEL: 500,         # the model failed to load
    RUNTIME_ERROR: 500,
    OPEN_VINO_ERROR: 500,
    ONNX_ERROR: 500,
    TENSORFLOW_ERROR: 500,
}


class ModelError(WaftError):
    """A failure the provider reports inside InferenceOutput (not as an RPC error)."""

    def __init__(self, variant: str, message: str) -> None:
        super().__init__(f"{variant}: {message}")
        self.variant = variant
        self.message = message


class WireError(WaftError, ValueError):
    """The payload is not a well-formed message at all (the provider answers with an RPC error)."""


# ----------------------------------------------------------------------------------------------- tensor

@dataclass(frozen=True)
class Tensor:
    dimensions: list[int] = field(default_factory=list)
    value_types: list[str] = field(default_factory=lambda: ["ValueF32"])
    flags: int = 0
    data: bytes = b""

    # -- wire
    def to_wire(self) -> dict[str, Any]:
        return {"dimensions": list(self.dimensions), "valueTypes": list(self.value_types), "flags": self.flags,
                "data": bytes(self.data)}

    @classmethod
    def from_wire(cls, wire: Any, *, what: str = "tensor") -> Tensor:
        if not isinstance(wire, Mapping):
            raise WireError(f"{what} must be a map, got {type(wire).__name__}")
        dims = wire.get("dimensions", [])
        if not isinstance(dims, list | tuple) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                         for d in dims):
            raise WireError(f"{what}.dimensions must be a list of unsigned integers")
        types = wire.get("valueTypes", ["ValueF32"])
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
            raise WireError(f"{what}.valueTypes must be a list of strings")
        flags = wire.get("flags", 0) or 0
        if not isinstance(flags, int) or isinstance(flags, bool):
            raise WireError(f"{what}.flags must be an unsigned 8-bit integer")
        data = wire.get("data", b"")
        if isinstance(data, str):  # the 0.x host wrote str for byte fields
            data = data.encode("utf-8", "surrogateescape")
        elif isinstance(data, list):  # serde_json form: an array of byte values
            try:
                data = bytes(data)
            except (TypeError, ValueError):
                raise WireError(f"{what}.data as a list must hold byte values 0-255") from None
        if not isinstance(data, bytes | bytearray | memoryview):
            raise WireError(f"{what}.data must be bytes")
        return cls([int(d) for d in dims], list(types), int(flags), bytes(data))

    # -- numpy
    @property
    def dtype(self) -> np.dtype[Any]:
        """The element type; raises corruptInputTensor when valueTypes is empty, mixed or unknown."""
        if not self.value_types:
            raise ModelError(CORRUPT_INPUT_TENSOR, "valueTypes is empty")
        names = {value_type_name(t) for t in self.value_types}
        if len(names) > 1:
            raise ModelError(CORRUPT_INPUT_TENSOR, f"mixed valueTypes {sorted(names)} are not supported")
        if len(self.value_types) not in (1, len(self.dimensions)):
            raise ModelError(CORRUPT_INPUT_TENSOR, f"valueTypes has {len(self.value_types)} entries; expected 1 "
                                                   f"or one per dimension ({len(self.dimensions)})")
        return VALUE_TYPES[names.pop()]

    def to_numpy(self, *, max_bytes: int | None = None) -> np.ndarray:
        """Decode to a C-contiguous native-endian array, checking everything the original's `check_dims` did
        (which its provider never called) plus flags and bool values."""
        if self.flags & ~KNOWN_FLAGS or not 0 <= self.flags <= 255:
            raise ModelError(CORRUPT_INPUT_TENSOR, f"flags {self.flags:#x} set reserved bits; known: column-major "
                                                   f"{FLAG_COLUMN_MAJOR:#x}, big-endian {FLAG_BIG_ENDIAN:#x}")
        if not self.dimensions:
            raise ModelError(CORRUPT_INPUT_TENSOR, "dimensions are empty")
        if any(d <= 0 or d > 0xFFFFFFFF for d in self.dimensions):
            raise ModelError(CORRUPT_INPUT_TENSOR, f"dimensions {list(self.dimensions)} must each be 1..2^32-1")
        dtype = self.dtype
        count = 1
        for d in self.dimensions:
            count *= d
        need = count * dtype.itemsize
        if max_bytes is not None and need > max_bytes:
            raise ModelError(CORRUPT_INPUT_TENSOR, f"tensor {list(self.dimensions)} of {name_of(dtype)} needs {need} "
                                                   f"bytes, over the limit of {max_bytes} (setting max_tensor_bytes)")
        if len(self.data) != need:
            raise ModelError(CORRUPT_INPUT_TENSOR, f"data is {len(self.data)} bytes but dimensions "
                                                   f"{list(self.dimensions)} of {name_of(dtype)} need {need} "
                                                   f"({count} x {dtype.itemsize})")
        wire_dtype = dtype.newbyteorder(">" if self.flags & FLAG_BIG_ENDIAN else "<")
        flat = np.frombuffer(self.data, dtype=wire_dtype)
        if dtype == np.bool_ and flat.size and np.frombuffer(self.data, np.uint8).max() > 1:
            raise ModelError(CORRUPT_INPUT_TENSOR, "ValueBool data must hold only bytes 0 and 1")
        order = "F" if self.flags & FLAG_COLUMN_MAJOR else "C"
        array = flat.reshape(self.dimensions, order=order)
        return np.ascontiguousarray(array, dtype=dtype)  # native order, row-major, a private copy

    @classmethod
    def from_numpy(cls, array: np.ndarray, *, flags: int = 0) -> Tensor:
        """Encode in the layout and byte order `flags` asks for (the provider mirrors the request's)."""
        array = np.asarray(array)
        dtype = array.dtype.newbyteorder(">" if flags & FLAG_BIG_ENDIAN else "<")
        order = "F" if flags & FLAG_COLUMN_MAJOR else "C"
        data = array.astype(dtype, copy=False).tobytes(order=order)
        dims = list(array.shape) or [1]
        return cls(dims, [name_of(array.dtype)], flags & KNOWN_FLAGS, data)


# ---------------------------------------------------------------------------------------------- messages

@dataclass(frozen=True)
class Normalize:
    """Per-channel `(x - mean) / std` the provider applies to a u8 tensor before the model sees it."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    axis: int

    def to_wire(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "axis": self.axis}

    @classmethod
    def from_wire(cls, wire: Any) -> Normalize:
        if not isinstance(wire, Mapping):
            raise WireError(f"InferenceInput.normalize must be a map, got {type(wire).__name__}")
        mean, std, axis = wire.get("mean"), wire.get("std"), wire.get("axis")
        for name, values in (("mean", mean), ("std", std)):
            if (not isinstance(values, list | tuple) or not values
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)):
                raise WireError(f"InferenceInput.normalize.{name} must be a non-empty list of numbers")
        assert isinstance(mean, list | tuple) and isinstance(std, list | tuple)
        if len(mean) != len(std):
            raise WireError(f"InferenceInput.normalize has {len(mean)} means but {len(std)} stds")
        if not isinstance(axis, int) or isinstance(axis, bool) or axis < 0:
            raise WireError("InferenceInput.normalize.axis must be an unsigned integer")
        with np.errstate(over="ignore"):  # a value past f32's range becomes inf, refused below
            mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        if not (np.isfinite(mean32).all() and np.isfinite(std32).all() and (std32 != 0).all()):
            raise WireError("InferenceInput.normalize: mean and std must be finite and std non-zero")
        return cls(tuple(float(v) for v in mean32), tuple(float(v) for v in std32), axis)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """f32 `(x - mean) / std` along `axis`: f32 operands throughout, so each element is rounded exactly
        as the pre-processor's C would round it."""
        if pixels.dtype != np.uint8:
            raise ModelError(CORRUPT_INPUT_TENSOR, f"normalize applies to ValueU8 pixels, got {name_of(pixels.dtype)}")
        if self.axis >= pixels.ndim or pixels.shape[self.axis] != len(self.mean):
            raise ModelError(CORRUPT_INPUT_TENSOR, f"normalize has {len(self.mean)} channels on axis {self.axis}, "
                                                   f"the tensor is {list(pixels.shape)}")
        shape = [1] * pixels.ndim
        shape[self.axis] = len(self.mean)
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.asarray(self.std, np.float32).reshape(shape)
        out = pixels.astype(np.float32)
        np.subtract(out, mean, out=out)
        np.divide(out, std, out=out)
        return out


def _named_tensors(wire: Any, what: str) -> tuple[tuple[str, Tensor], ...]:
    if not isinstance(wire, list | tuple):
        raise WireError(f"{what} must be a list of {{name, tensor}} maps")
    out = []
    for i, entry in enumerate(wire):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise WireError(f"{what}[{i}] must be a map with a non-empty name and a tensor")
        out.append((entry["name"], Tensor.from_wire(entry.get("tensor") or {}, what=f"{what}[{i}].tensor")))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise WireError(f"{what} names a tensor twice: {names}")
    return tuple(out)


def _named_wire(tensors: tuple[tuple[str, Tensor], ...]) -> list[dict[str, Any]]:
    return [{"name": name, "tensor": tensor.to_wire()} for name, tensor in tensors]


@dataclass(frozen=True)
class InferenceInput:
    """`inputs` and `outputs` are Waft's (absent from the original, ignored by readers that do not know them),
    for models with several inputs or outputs, as the Open Inference Protocol names them: `inputs` feeds each
    model input by name (`tensor` then repeats the first, for old readers), `outputs` names the outputs wanted
    (empty: all of them, in the model's order) and makes the answer carry them in InferenceOutput.outputs."""

    model: str
    tensor: Tensor
    index: int = 0
    normalize: Normalize | None = None
    inputs: tuple[tuple[str, Tensor], ...] | None = None
    outputs: tuple[str, ...] | None = None

    def encode(self) -> bytes:
        wire: dict[str, Any] = {"model": self.model, "tensor": self.tensor.to_wire(), "index": self.index}
        if self.normalize is not None:
            wire["normalize"] = self.normalize.to_wire()
        if self.inputs is not None:
            wire["inputs"] = _named_wire(self.inputs)
        if self.outputs is not None:
            wire["outputs"] = list(self.outputs)
        return msgpack.packb(wire, use_bin_type=True)

    @classmethod
    def decode(cls, payload: bytes) -> InferenceInput:
        wire = _unpack(payload, "InferenceInput")
        model = wire.get("model")
        if not isinstance(model, str) or not model:
            raise WireError("InferenceInput.model must be a non-empty string")
        if "tensor" not in wire:
            raise WireError("InferenceInput.tensor is missing")
        index = wire.get("index", 0) or 0
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise WireError("InferenceInput.index must be an unsigned integer")
        normalize = wire.get("normalize")
        inputs = wire.get("inputs")
        outputs = wire.get("outputs")
        if outputs is not None and (not isinstance(outputs, list | tuple)
                                    or not all(isinstance(o, str) and o for o in outputs)):
            raise WireError("InferenceInput.outputs must be a list of output names")
        return cls(model, Tensor.from_wire(wire["tensor"], what="InferenceInput.tensor"), index,
                   None if normalize is None else Normalize.from_wire(normalize),
                   None if inputs is None else _named_tensors(inputs, "InferenceInput.inputs"),
                   None if outputs is None else tuple(outputs))

    def to_numpy(self, *, max_bytes: int | None = None) -> np.ndarray:
        """The array the model is fed: the tensor, normalised when the request asks for it. The bound is on
        what the model is fed, so u8 pixels that become f32 may take a quarter of it."""
        if self.normalize is None:
            return self.tensor.to_numpy(max_bytes=max_bytes)
        array = self.tensor.to_numpy(max_bytes=None if max_bytes is None else max_bytes // 4)
        return self.normalize.apply(array)


@dataclass(frozen=True)
class InferenceOutput:
    """`outputs` (Waft's): every output the request's `outputs` asked for, by name; `tensor` is the first."""

    tensor: Tensor = field(default_factory=Tensor)
    error: ModelError | None = None
    outputs: tuple[tuple[str, Tensor], ...] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_wire(self) -> dict[str, Any]:
        result: dict[str, Any] = ({"success": None} if self.error is None
                                  else {"error": {self.error.variant: self.error.message}})
        wire = {"result": result, "tensor": self.tensor.to_wire()}
        if self.outputs is not None:
            wire["outputs"] = _named_wire(self.outputs)
        return wire

    def encode(self) -> bytes:
        return msgpack.packb(self.to_wire(), use_bin_type=True)

    @classmethod
    def failure(cls, error: ModelError) -> InferenceOutput:
        """An error answer carries the original's `Tensor::default()`: f32, no dims, no data."""
        return cls(Tensor(), error)

    @classmethod
    def decode(cls, payload: bytes) -> InferenceOutput:
        wire = _unpack(payload, "InferenceOutput")
        tensor = Tensor.from_wire(wire.get("tensor") or {}, what="InferenceOutput.tensor")
        outputs = wire.get("outputs")
        return cls(tensor, status_error(wire.get("result")),
                   None if outputs is None else _named_tensors(outputs, "InferenceOutput.outputs"))


def status_error(result: Any) -> ModelError | None:
    """Read a Status in any of the forms seen on the wire: `{"success": null}`, `"Success"`,
    `{"error": {variant: msg}}` or serde_json's `{"Error": {"Variant": msg}}`."""
    if result is None or (isinstance(result, str) and result.lower() == "success"):
        return None
    if isinstance(result, Mapping):
        lowered = {str(k).lower(): v for k, v in result.items()}
        if "success" in lowered:
            return None
        error = lowered.get("error")
        if isinstance(error, Mapping) and len(error) == 1:
            (variant, message), = error.items()
            variant = str(variant)
            return ModelError(variant[:1].lower() + variant[1:], str(message))
    raise WireError(f"unreadable result status {result!r}")


def _unpack(payload: bytes, what: str) -> dict[str, Any]:
    try:
        wire = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise WireError(f"{what} is not valid msgpack: {exc}") from None
    except UnicodeDecodeError as exc:
        raise WireError(f"{what} holds a string that is not UTF-8: {exc}") from None
    if not isinstance(wire, dict):
        raise WireError(f"{what} must be a msgpack map, got {type(wire).__name__}")
    return wire


def predict_request(model: str, array: np.ndarray, *, index: int = 0, flags: int = 0) -> bytes:
    """Convenience for tests and benchmarks: an encoded InferenceInput for `array`."""
    return InferenceInput(model, Tensor.from_numpy(array, flags=flags), index).encode()


# ------------------------------------------------------------------------------------------ model status

class ModelState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a loaded model; -1 in `dimensions` is a free axis, None an unknown rank."""

    name: str
    value_type: str | None = None
    dimensions: list[int] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "valueType": self.value_type,
                "dimensions": None if self.dimensions is None else list(self.dimensions)}

    @classmethod
    def from_wire(cls, wire: Any) -> TensorSpec:
        if not isinstance(wire, Mapping):
            raise WireError(f"a tensor spec must be a map, got {type(wire).__name__}")
        dims = wire.get("dimensions")
        if dims is not None and (not isinstance(dims, list) or not all(isinstance(d, int) for d in dims)):
            raise WireError(f"tensor spec dimensions must be a list of integers, got {dims!r}")
        value_type = wire.get("valueType")
        return cls(str(wire.get("name") or ""), None if value_type is None else str(value_type),
                   None if dims is None else list(dims))


@dataclass(frozen=True)
class RetryInfo:
    """A model whose source could not be reached and will be asked again: still loading, for a reason."""

    attempt: int  # attempts that failed so far
    attempts: int  # attempts allowed in all
    delay_s: float  # until the next one
    error: str  # why the last one failed

    @property
    def note(self) -> str:
        return f"attempt {self.attempt}/{self.attempts} failed, retrying in {self.delay_s:g} s: {self.error}"

    def to_wire(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "attempts": self.attempts, "delaySeconds": self.delay_s,
                "error": self.error}

    @classmethod
    def from_wire(cls, wire: Any) -> RetryInfo:
        if not isinstance(wire, Mapping):
            raise WireError(f"retry must be a map, got {type(wire).__name__}")
        try:
            return cls(int(wire.get("attempt") or 0), int(wire.get("attempts") or 0),
                       float(wire.get("delaySeconds") or 0), str(wire.get("error") or ""))
        except (TypeError, ValueError) as exc:
            raise WireError(f"unreadable retry {dict(wire)!r}: {exc}") from None


@dataclass(frozen=True)
class ModelStatus:
    """What a provider says about one model, so no reader has to guess from a sentence.

    `reason` says why a model is not ready: the load error when failed, the retry when loading.
    `error_variant` is the MlError variant Predict answers for a failed model.
    """

    name: str
    state: ModelState
    bindle_id: str = ""
    reason: str = ""
    error_variant: str = ""
    retry: RetryInfo | None = None
    graph_encoding: str = ""
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name, "bindleId": self.bindle_id, "status": self.state.value}
        if self.reason:
            wire["reason"] = self.reason
        if self.state is ModelState.FAILED:
            wire["error"] = {self.error_variant or INVALID_MODEL: self.reason}
        if self.retry is not None:
            wire["retry"] = self.retry.to_wire()
            wire["retrying"] = self.retry.note  # the text ListModels carried before `retry` existed
        if self.graph_encoding:
            wire["graphEncoding"] = self.graph_encoding
        if self.inputs or self.outputs:
            wire["inputs"] = [s.to_wire() for s in self.inputs]
            wire["outputs"] = [s.to_wire() for s in self.outputs]
        if self.warnings:
            wire["warnings"] = list(self.warnings)
        return wire

    @classmethod
    def from_wire(cls, wire: Any) -> ModelStatus:
        if not isinstance(wire, Mapping):
            raise WireError(f"a model status must be a map, got {type(wire).__name__}")
        name = wire.get("name")
        if not isinstance(name, str) or not name:
            raise WireError("a model status needs a name")
        try:
            state = ModelState(wire.get("status"))
        except ValueError:
            raise WireError(f"model {name!r}: unknown status {wire.get('status')!r}; "
                            f"expected one of {', '.join(s.value for s in ModelState)}") from None
        error = wire.get("error")
        variant, message = "", ""
        if isinstance(error, Mapping) and len(error) == 1:
            (variant, message), = ((str(k), str(v)) for k, v in error.items())
        retry = wire.get("retry")
        warnings = wire.get("warnings")
        return cls(name, state, str(wire.get("bindleId") or ""), str(wire.get("reason") or message),
                   variant, None if retry is None else RetryInfo.from_wire(retry),
                   str(wire.get("graphEncoding") or ""),
                   tuple(TensorSpec.from_wire(s) for s in wire.get("inputs") or ()),
                   tuple(TensorSpec.from_wire(s) for s in wire.get("outputs") or ()),
                   tuple(str(w) for w in warnings) if isinstance(warnings, list) else ())


#: The key of `details` under which the mlinference provider's health lists its models.
HEALTH_MODELS = "models"
#: The key of `details` under which it puts each loaded model's counters, by model name, in the form of Triton's
#: statistics extension (`{inference_count, execution_count, inference_stats: {success, fail, queue,
#: compute_input, compute_infer, compute_output: {count, ns}}, batch_stats: [{batch_size, compute_infer}]}`):
#: the dashboard turns them into Prometheus series without asking every actor's ListModels.
HEALTH_STATS = "stats"


def stats_in_health(details: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each model's Triton-form counters in a provider's health details (empty when it reports none)."""
    listed = details.get(HEALTH_STATS)
    if not isinstance(listed, Mapping):
        return {}
    return {str(name): stats for name, stats in listed.items() if isinstance(stats, Mapping)}


def models_in_health(details: Mapping[str, Any]) -> list[ModelStatus] | None:
    """The model statuses in a provider's health details; None when it reports none (not a model server)."""
    listed = details.get(HEALTH_MODELS)
    if not isinstance(listed, list):
        return None
    return [ModelStatus.from_wire(m) for m in listed]
