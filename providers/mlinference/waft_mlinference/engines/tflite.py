"""TensorFlow Lite (`graph_encoding` `tf_lite`) through tensorflow's bundled interpreter.

A TFLite Interpreter is not thread-safe, so the engine keeps one interpreter per allowed concurrent
request (`max_concurrent`) in a pool; a request borrows one, resizes its input if the shape changed
(dynamic dims), invokes, and copies the outputs out before giving it back. Outputs are returned as
the model produces them (a quantised model answers u8; no silent dequantisation).
"""

from __future__ import annotations

import logging
import queue
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from waft.interfaces.mlinference import INVALID_MODEL, TENSORFLOW_ERROR, ModelError
from waft_mlinference.engines.base import IOSpec
from waft_mlinference.engines.tf import import_tf
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.settings import ModelOptions

log = logging.getLogger("waft.mlinference.tflite")


def interpreter_class() -> Any:
    """LiteRT's interpreter when `ai_edge_litert` is installed, else tensorflow's (deprecated there, still
    shipped in tensorflow-cpu 2.21; its deprecation warning is silenced, the docs say so)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter
    except ImportError:
        return import_tf().lite.Interpreter


def _spec(detail: dict[str, Any], *, dtype: np.dtype[Any] | None = None) -> IOSpec:
    signature = detail.get("shape_signature")
    dims = signature if signature is not None and len(signature) else detail["shape"]
    return IOSpec(detail["name"], dtype or np.dtype(detail["dtype"]), tuple(int(d) if d >= 0 else None for d in dims))


def _quantization(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of a quantized integer tensor; None for a float one (TF Lite reports scale 0)."""
    scale, zero_point = detail.get("quantization") or (0.0, 0)
    if not scale or np.dtype(detail["dtype"]).kind not in "iu":
        return None
    return float(scale), int(zero_point)


class TfLiteEngine:
    encoding = "tf_lite"
    error_variant = TENSORFLOW_ERROR
    warning: str | None = None

    def __init__(self, path: Path, meta: ModelMetadata, options: ModelOptions) -> None:
        interpreter_cls = interpreter_class()
        target = options.execution_target or meta.execution_target
        self.target = "cpu"
        if target != "cpu":
            self.warning = f"execution_target {target} requested; the TFLite interpreter runs it on cpu"
            log.warning("%s: %s", path.name, self.warning)
        content = path.read_bytes()
        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(max(1, options.max_concurrent)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    interpreter = interpreter_cls(model_content=content, num_threads=options.threads_per_run)
                interpreter.allocate_tensors()
            except Exception as exc:
                raise ModelError(INVALID_MODEL, f"{path.name} is not a loadable TFLite model: {exc}") from None
            self._pool.put(interpreter)
        probe = self._pool.queue[0]
        self._input_details = probe.get_input_details()
        self._output_details = probe.get_output_details()
        self.inputs = [_spec(d) for d in self._input_details]
        #: Quantized outputs are answered dequantized, `scale * (q - zero_point)` in f32, as the original's
        #: TF Lite engine did: a client (and the post-processor) gets scores, not codes.
        self._dequantize = [_quantization(d) for d in self._output_details]
        self.outputs = [_spec(d, dtype=np.dtype(np.float32) if q else None)
                        for d, q in zip(self._output_details, self._dequantize, strict=True)]
        #: TF Lite's converter gives softmax and logistic outputs a fixed quantisation, scale 1/256 with zero
        #: point 0 (u8) or -128 (i8); calibrated outputs get (max - min) / 255. Such an output already holds
        #: probabilities, and a second softmax would flatten them (0.23 for a sure digit instead of 0.9).
        self.outputs_probabilities = bool(self._output_details) and all(
            q is not None and q[0] == 1 / 256 and q[1] == (0 if np.dtype(d["dtype"]).kind == "u" else -128)
            for d, q in zip(self._output_details, self._dequantize, strict=True))

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        return self.run_named({self.inputs[0].name: array})

    def run_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for one array per input name (names as `inputs` declares them, checked by the runner).

        Inputs whose shape changed are resized first and the tensors allocated once for all of them: an
        allocation invalidates tensors set before it."""
        interpreter = self._pool.get()
        try:
            details = {d["name"]: d for d in interpreter.get_input_details()}
            changed = [(details[name]["index"], array.shape) for name, array in feeds.items()
                       if tuple(details[name]["shape"]) != array.shape]
            for index, shape in changed:
                interpreter.resize_tensor_input(index, list(shape), strict=True)
            if changed:
                interpreter.allocate_tensors()
            for name, array in feeds.items():
                interpreter.set_tensor(details[name]["index"], array)
            interpreter.invoke()
            outputs = [np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()]
            return [out if q is None else (np.float32(q[0]) * (out.astype(np.float32) - np.float32(q[1])))
                    for out, q in zip(outputs, self._dequantize, strict=True)]
        finally:
            self._pool.put(interpreter)

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait()
