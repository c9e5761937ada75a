"""ONNX through onnxruntime: one InferenceSession per model, optimised once and cached on disk.

The first load runs ORT_ENABLE_ALL and writes the optimised graph (`SessionOptions.optimized_model_filepath`)
to the cache; later loads read that file with optimisation off, so a restart skips the work. The
cache key holds the model's sha256, the onnxruntime version, the execution providers and the CPU,
because ENABLE_ALL output may use hardware-specific kernels (NCHWc) valid only where it was made.
`InferenceSession.run` is thread-safe, so one session serves every concurrent request.

With automatic threads a second, single-threaded session of the same graph serves a run that starts
while another is in flight: alone, a run gets its wider intra-op pool (latency); under load, each run
takes one core and no thread hand-offs (CPU per request). Measured in-process on 2 cores:
one effnetlite0 run costs 9.0-9.5 ms of CPU (5.6 ms wall) with two threads, 7.1 ms (7.1 ms) with one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from waft.interfaces.mlinference import INVALID_MODEL, ONNX_ERROR, ModelError
from waft_mlinference.engines.base import IOSpec
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.settings import ModelOptions

log = logging.getLogger("waft.mlinference.onnx")

#: Models up to this size get the single-threaded twin session (it holds its own copy of the weights).
NARROW_TWIN_MAX_BYTES = 256 * 1024 * 1024

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(uint16)": np.uint16, "tensor(int16)": np.int16,
    "tensor(uint32)": np.uint32, "tensor(int32)": np.int32, "tensor(uint64)": np.uint64,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def _spec(arg: Any) -> IOSpec:
    dtype = _ORT_TYPES.get(arg.type)
    shape = None if arg.shape is None else tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    return IOSpec(arg.name, np.dtype(dtype) if dtype is not None else None, shape)


def providers_for(target: str) -> tuple[list[str], str, str | None]:
    """(execution providers, effective target, warning). GPU only through CUDA, when this build has it."""
    available = ort.get_available_providers()
    if target == "gpu":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"], "gpu", None
        return (["CPUExecutionProvider"], "cpu",
                f"execution_target gpu requested but onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); running on cpu")
    if target == "tpu":
        return ["CPUExecutionProvider"], "cpu", "execution_target tpu is not supported by onnxruntime; running on cpu"
    return ["CPUExecutionProvider"], "cpu", None


def _cpu_id() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return hashlib.sha256(line.encode()).hexdigest()[:8]
    except OSError:
        pass
    return platform.processor() or "cpu"


def _digest_file(cached: Path) -> Path:
    return cached.with_name(cached.name + ".sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OnnxEngine:
    encoding = "onnx"
    error_variant = ONNX_ERROR

    def __init__(self, path: Path, meta: ModelMetadata, options: ModelOptions, cache_dir: Path | None) -> None:
        providers, self.target, self.warning = providers_for(options.execution_target or meta.execution_target)
        if self.warning:
            log.warning("%s: %s", path.name, self.warning)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = options.threads_per_run
        so.inter_op_num_threads = options.inter_op_threads
        if not options.spin_wait:  # see ModelOptions.spin_wait for the measurement
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.log_severity_level = 3  # errors only: the NCHWc serialisation warning is expected
        source, part = str(path), None
        if cache_dir is not None:
            key = f"{_sha256(path)[:32]}-ort{ort.__version__}-{'+'.join(providers)}-{_cpu_id()}"
            cached = cache_dir / f"{key}.onnx"
            session = self._from_cache(cached, so, providers) if cached.is_file() else None
            if session is not None:
                source = str(cached)
            else:
                cache_dir.mkdir(parents=True, exist_ok=True)
                part = cache_dir / f".{key}.{uuid.uuid4().hex}.part"
                so.optimized_model_filepath = str(part)
        try:
            if part is not None or cache_dir is None:
                session = ort.InferenceSession(source, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            if part is not None:
                part.unlink(missing_ok=True)
            raise ModelError(INVALID_MODEL, f"onnxruntime cannot load {path.name}: {exc}") from None
        self.session = session
        if part is not None:
            if part.is_file():
                # the digest first, then the graph: a cache entry without a matching digest is never used
                _digest_file(cached).write_text(_sha256(part))
                os.replace(part, cached)
            self.optimized_cache = cached
        self.optimized_from_cache = part is None and source != str(path)
        #: The optimised graph on disk (written now or read from the cache), for the twin to load as is.
        optimized = cached if part is not None and cached.is_file() else (Path(source) if self.optimized_from_cache
                                                                         else None)
        self.inputs = [_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_spec(a) for a in self.session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]
        self._lock = threading.Lock()
        self._in_flight = 0
        self.narrow: ort.InferenceSession | None = None
        automatic = not options.intra_op_threads and not options.spin_wait
        if automatic and so.intra_op_num_threads > 1 and path.stat().st_size <= NARROW_TWIN_MAX_BYTES:
            so.intra_op_num_threads = 1
            so.optimized_model_filepath = ""
            if optimized is not None:
                source = str(optimized)
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            self.narrow = ort.InferenceSession(source, sess_options=so, providers=providers)

    @staticmethod
    def _from_cache(cached: Path, so: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession | None:
        """The cached optimised graph when it is whole: its digest matches the one written with it and
        onnxruntime opens it. A torn or changed entry is removed (and rebuilt by the caller), never fatal."""
        digest = _digest_file(cached)
        try:
            whole = digest.is_file() and digest.read_text().strip() == _sha256(cached)
        except OSError:
            whole = False
        if whole:
            level = so.graph_optimization_level
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(str(cached), sess_options=so, providers=providers)
            except Exception as exc:
                log.warning("cached optimised graph %s does not load (%s); rebuilding it", cached.name, exc)
                so.graph_optimization_level = level
        else:
            log.warning("cached optimised graph %s is torn or changed; rebuilding it", cached.name)
        cached.unlink(missing_ok=True)
        digest.unlink(missing_ok=True)
        return None

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        return self.run_named({self.inputs[0].name: array})

    def run_named(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output for one array per input name (a model with several inputs)."""
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            session = self.session if alone or self.narrow is None else self.narrow
            return session.run(self._output_names, feeds)
        finally:
            with self._lock:
                self._in_flight -= 1

    def close(self) -> None:
        del self.session
        self.narrow = None
