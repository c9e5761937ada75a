"""Which models are loaded, for which actors, and in what state.

A model is keyed by (source, bindle id, options): two actors naming the same bindle with the same
options share one session, and it is unloaded when the last of their links goes. Loading happens in
a background task per model (the original loaded in a detached `tokio::spawn` and logged failures);
until it finishes Predict answers `modelLoading`, and a failed load answers its error on every
request and shows in health. Load tasks are owned here and cancelled and joined on unload/close.

Every report (ListModels, health) is built from one `ModelStatus` per model, so each reader sees the
state the registry holds: ready, loading (with the retry, if the source is being asked again), or
failed with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from waft.interfaces.mlinference import (
    CONTEXT_NOT_FOUND,
    CORRUPT_INPUT_TENSOR,
    HEALTH_MODELS,
    HEALTH_STATS,
    INVALID_MODEL,
    MODEL_LOADING,
    RUNTIME_ERROR,
    InferenceInput,
    InferenceOutput,
    ModelError,
    ModelState,
    ModelStatus,
    RetryInfo,
    Tensor,
)
from waft.lattice.health import HealthCheckResponse
from waft_mlinference.engines import load_engine
from waft_mlinference.input_spec import input_spec_for
from waft_mlinference.metadata import ModelMetadata
from waft_mlinference.runner import ModelRunner
from waft_mlinference.settings import LinkSettings, ModelOptions
from waft_mlinference.sources import BindleSource, DirectorySource, ModelFiles, ModelSource, SourceUnavailable

log = logging.getLogger("waft.mlinference")

DEFAULT_LOAD_TIMEOUT_S = 600.0
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class ModelKey:
    source: str
    bindle_id: str
    options: ModelOptions


@dataclass
class Model:
    key: ModelKey
    name: str  # the first route it was loaded under, for messages and thread names
    state: ModelState = ModelState.LOADING
    error: ModelError | None = None
    runner: ModelRunner | None = None
    metadata: ModelMetadata | None = None
    labels: list[str] | None = None
    users: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    load_seconds: float | None = None
    retry: RetryInfo | None = None  # while a fetch is being retried: why, and when next

    def status(self, route: str | None = None) -> ModelStatus:
        """The model as readers see it, under `route` (an actor's name for it) or its first route."""
        reason = self.error.message if self.error is not None else self.retry.note if self.retry else ""
        status = ModelStatus(route or self.name, self.state, self.key.bindle_id, reason,
                             self.error.variant if self.error is not None else "", self.retry)
        if self.metadata is not None:
            status = replace(status, graph_encoding=self.metadata.graph_encoding)
        if self.runner is not None:
            engine = self.runner.engine
            status = replace(status, inputs=tuple(s.spec() for s in engine.inputs),
                             outputs=tuple(s.spec() for s in engine.outputs),
                             warnings=tuple(n for n in (engine.warning, self.runner.batching_note) if n))
        return status


class ModelRegistry:
    def __init__(self, *, cache_dir: Path | None = None, slot_timeout_s: float = 30.0,
                 load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S) -> None:
        self.cache_dir = cache_dir
        self.slot_timeout_s = slot_timeout_s
        self.load_timeout_s = load_timeout_s
        self.models: dict[ModelKey, Model] = {}
        self.routes: dict[str, dict[str, ModelKey]] = {}  # actor -> route -> model
        self.unloaded: dict[str, dict[str, ModelKey]] = {}  # actor -> route -> model, unloaded on request
        self.sources: dict[str, ModelSource] = {}  # actor -> where its link loads models from

    # --------------------------------------------------------------------------------------- links
    def source_for(self, settings: LinkSettings) -> ModelSource:
        if settings.model_dir is not None:
            return DirectorySource(settings.model_dir)
        parcels = self.cache_dir / "parcels" if self.cache_dir is not None else None
        return BindleSource(settings.bindle_url, parcels)

    def attach(self, actor_id: str, settings: LinkSettings, source: ModelSource | None = None) -> None:
        """Start loading what the actor's zoo names (sharing models already loaded or loading)."""
        source = source or self.source_for(settings)
        routes: dict[str, ModelKey] = {}
        for route, bindle_id in settings.zoo.items():
            key = ModelKey(source.description, bindle_id, settings.options_for(route))
            self._use(actor_id, route, key, source)
            routes[route] = key
        self.routes[actor_id] = routes
        self.unloaded.pop(actor_id, None)
        self.sources[actor_id] = source

    def _use(self, actor_id: str, route: str, key: ModelKey, source: ModelSource) -> None:
        """The actor uses the model `key`: shared when it is loaded or loading, else loaded now."""
        model = self.models.get(key)
        if model is None:
            model = self.models[key] = Model(key, route)
            model.task = asyncio.create_task(self._load(model, source), name=f"load {key.bindle_id}")
            log.info("loading model %s (%s) from %s", route, key.bindle_id, source.description)
        model.users.add(actor_id)

    async def unload(self, actor_id: str, route: str) -> None:
        """Triton's unload for one of the actor's routes: the route stays known (ListModels says `unloaded`)
        and the model is unloaded once no other actor uses it. Unloading an unloaded route is a no-op."""
        if route in self.unloaded.get(actor_id, {}):
            return
        self.lookup(actor_id, route)  # contextNotFoundError for a route the link does not name
        key = self.routes[actor_id].pop(route)
        self.unloaded.setdefault(actor_id, {})[route] = key
        model = self.models.get(key)
        if model is not None:
            model.users.discard(actor_id)
            if not model.users:
                del self.models[key]
                await self._unload(model)

    def load(self, actor_id: str, route: str) -> Model:
        """Triton's load for one of the actor's routes: an unloaded one starts loading again, and so does a
        failed one (for every actor sharing it); a ready or loading one is left as it is. Returns the model,
        whose `task` is the load to wait for."""
        key = self.unloaded.get(actor_id, {}).pop(route, None)
        if key is None:
            model = self.lookup(actor_id, route)
            if model.state is not ModelState.FAILED:
                return model
            del self.models[model.key]  # nothing runs for a failed model: load it afresh for all its users
            self._use(actor_id, route, model.key, self.sources[actor_id])
            self.models[model.key].users |= model.users
            return self.models[model.key]
        self._use(actor_id, route, key, self.sources[actor_id])
        self.routes[actor_id][route] = key
        return self.models[key]

    async def detach(self, actor_id: str) -> list[str]:
        """Forget the actor's routes; unload each model no other actor uses. Returns the unloaded ids."""
        unloaded = []
        self.unloaded.pop(actor_id, None)
        self.sources.pop(actor_id, None)
        for key in self.routes.pop(actor_id, {}).values():
            model = self.models.get(key)
            if model is None:
                continue
            model.users.discard(actor_id)
            if not model.users:
                del self.models[key]
                await self._unload(model)
                unloaded.append(key.bindle_id)
        return unloaded

    async def close(self) -> None:
        models, self.models, self.routes, self.unloaded = list(self.models.values()), {}, {}, {}
        await asyncio.gather(*(self._unload(m) for m in models), return_exceptions=True)

    async def _unload(self, model: Model) -> None:
        if model.task is not None and not model.task.done():
            model.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await model.task
        if model.runner is not None:
            await model.runner.close()
            model.runner = None
        log.info("unloaded model %s (%s)", model.name, model.key.bindle_id)

    async def _load(self, model: Model, source: ModelSource) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.load_timeout_s):
                files = await self._fetch(model, source)
                meta = ModelMetadata.parse(files.metadata)
                ort_cache = self.cache_dir / "ort" if self.cache_dir is not None else None
                engine = await asyncio.to_thread(load_engine, files.model, meta, model.key.options, ort_cache)
        except ModelError as exc:
            self._fail(model, exc)
            return
        except TimeoutError:
            self._fail(model, ModelError(INVALID_MODEL, f"loading took longer than {self.load_timeout_s:g} s"))
            return
        except Exception as exc:
            log.exception("loading %s failed", model.key.bindle_id)
            self._fail(model, ModelError(INVALID_MODEL, f"{type(exc).__name__}: {exc}"))
            return
        model.runner = ModelRunner(model.name, engine, model.key.options, slot_timeout_s=self.slot_timeout_s)
        model.metadata, model.labels = meta, files.labels
        model.load_seconds = time.monotonic() - started
        model.state, model.retry = ModelState.READY, None
        log.info("model %s (%s) ready on %s in %.2f s", model.name, model.key.bindle_id, engine.target,
                 model.load_seconds)

    async def _fetch(self, model: Model, source: ModelSource) -> ModelFiles:
        """The model's files; a source that is unreachable is retried with exponential backoff, at most
        `load_attempts` tries in all (then the model fails naming the last error and the count)."""
        attempts, backoff_s = model.key.options.load_attempts, model.key.options.load_backoff_ms / 1000
        for attempt in range(1, attempts + 1):
            try:
                return await source.fetch(model.key.bindle_id)
            except SourceUnavailable as exc:
                if attempt >= attempts:
                    raise ModelError(exc.variant, f"{exc.message} (gave up after {attempt} attempt"
                                                  f"{'s' if attempt > 1 else ''})") from None
                delay = min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                model.retry = RetryInfo(attempt, attempts, delay, exc.message)
                log.warning("model %s (%s): %s", model.name, model.key.bindle_id, model.retry.note)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # load_attempts >= 1

    def _fail(self, model: Model, error: ModelError) -> None:
        model.error = ModelError(error.variant, f"model {model.name!r} ({model.key.bindle_id}) failed to load: "
                                                f"{error.message}")
        model.state = ModelState.FAILED
        model.retry = None
        log.error("%s", model.error.message)

    # ------------------------------------------------------------------------------------ requests
    def lookup(self, actor_id: str, route: str) -> Model:
        routes = self.routes.get(actor_id, {})
        key = routes.get(route)
        model = self.models.get(key) if key is not None else None
        if model is None and route in self.unloaded.get(actor_id, {}):
            raise ModelError(CONTEXT_NOT_FOUND, f"model {route!r} was unloaded; load it again "
                                                f"(POST /v2/repository/models/{route}/load)")
        if model is None:
            served = ", ".join(sorted(routes)) or "no models"
            raise ModelError(CONTEXT_NOT_FOUND, f"unknown model {route!r}; this actor's link serves: {served}")
        return model

    def ready(self, actor_id: str, route: str) -> tuple[Model, ModelRunner]:
        model = self.lookup(actor_id, route)
        if model.state is ModelState.FAILED:
            assert model.error is not None
            raise model.error
        if model.state is ModelState.LOADING or model.runner is None:
            raise ModelError(MODEL_LOADING, f"model {route!r} ({model.key.bindle_id}) is still loading; retry shortly")
        return model, model.runner

    async def predict(self, actor_id: str, request: InferenceInput) -> InferenceOutput:
        begun = time.perf_counter_ns()
        runner: ModelRunner | None = None
        try:
            model, runner = self.ready(actor_id, request.model)
            if request.outputs:  # before any work: a name the model lacks is the request's fault
                names = [spec.name for spec in runner.engine.outputs]
                alias = _parcel_alias(model.metadata.output_name if model.metadata else None, runner.engine.outputs)
                unknown = [n for n in request.outputs if alias.get(n, n) not in names]
                if unknown:
                    raise ModelError(CORRUPT_INPUT_TENSOR, f"model {request.model!r} has no output "
                                                           f"{', '.join(unknown)}; its outputs: {', '.join(names)}")
            limit = model.key.options.max_tensor_bytes
            if request.inputs is not None:
                if not request.inputs:
                    raise ModelError(CORRUPT_INPUT_TENSOR, "InferenceInput.inputs is empty")
                alias = _parcel_alias(model.metadata.input_name if model.metadata else None, runner.engine.inputs)
                feeds = {alias.get(name, name): tensor.to_numpy(max_bytes=limit) for name, tensor in request.inputs}
                if sum(a.nbytes for a in feeds.values()) > limit:
                    raise ModelError(CORRUPT_INPUT_TENSOR, f"the inputs need more than max_tensor_bytes ({limit})")
                array = next(iter(feeds.values()))
                input_ns = time.perf_counter_ns() - begun
                outputs = await runner.predict_named(feeds)
            else:
                array = request.to_numpy(max_bytes=limit)
                input_ns = time.perf_counter_ns() - begun
                outputs = await runner.predict(array)
            encoding = time.perf_counter_ns()
            if request.outputs is not None:
                answer = self._named_outputs(model, runner, request, outputs)
            else:
                if request.index >= len(outputs):
                    raise ModelError(RUNTIME_ERROR, f"output index {request.index} is out of range: model "
                                                    f"{request.model!r} has {len(outputs)} output(s)")
                output = np.asarray(outputs[request.index])
                answer = InferenceOutput(Tensor.from_numpy(output, flags=request.tensor.flags))
            done = time.perf_counter_ns()
            stats = runner.statistics
            stats.compute_input.add(input_ns)  # the phases count successful requests only, as Triton's do
            stats.compute_output.add(done - encoding)
            stats.success.add(done - begun)
            stats.inference_count += 1  # per request: the config declares no batch dimension
            stats.last_inference_ms = int(time.time() * 1000)
            return answer
        except ModelError as exc:
            if runner is not None:
                runner.statistics.fail.add(time.perf_counter_ns() - begun)
            return InferenceOutput.failure(exc)

    @staticmethod
    def _named_outputs(model: Model, runner: ModelRunner, request: InferenceInput,
                       outputs: list[np.ndarray]) -> InferenceOutput:
        """The outputs the request named (all, in the model's order, when it named none), under the names it
        used; a model's one output answers to the parcel's `output_name` too, and is called so in `all`."""
        names = [spec.name for spec in runner.engine.outputs]
        alias = _parcel_alias(model.metadata.output_name if model.metadata else None, runner.engine.outputs)
        wanted = list(request.outputs or (alias or {n: n for n in names}))  # names checked before the run
        named = tuple((n, Tensor.from_numpy(np.asarray(outputs[names.index(alias.get(n, n))]),
                                            flags=request.tensor.flags)) for n in wanted)
        return InferenceOutput(named[0][1], outputs=named)

    # ------------------------------------------------------------------------------------- reports
    def describe(self, actor_id: str) -> list[dict[str, Any]]:
        """ListModels: each of the actor's routes as a ModelStatus map, plus how it is being served."""
        out = []
        for route, key in sorted(self.routes.get(actor_id, {}).items()):
            model = self.models.get(key)
            if model is None:
                continue
            entry = model.status(route).to_wire()
            runner = model.runner
            if model.metadata is not None:
                entry["executionTarget"] = model.metadata.execution_target
                if runner is not None:
                    entry["inputSpec"], entry["inputSpecSource"] = self._input_spec(model.metadata, runner)
            if runner is not None:
                entry |= {"runsOn": runner.engine.target,
                          "maxConcurrent": key.options.max_concurrent, "maxQueue": key.options.max_queue,
                          "batching": None if runner.batching is None else
                          {"maxItems": runner.batching.max_items, "maxDelayMs": runner.batching.max_delay_ms,
                           "batchesRun": runner.batches_run},
                          "loadSeconds": model.load_seconds, "stats": runner.statistics.to_triton()}
            out.append(entry)
        for route, key in sorted(self.unloaded.get(actor_id, {}).items()):
            out.append({"name": route, "bindleId": key.bindle_id, "status": "unloaded",
                        "reason": "unloaded on request (POST /v2/repository/models/{m}/load loads it again)"})
        return sorted(out, key=lambda e: e["name"])

    def metadata(self, actor_id: str, route: str) -> dict[str, Any]:
        """The metadata parcel, with the input spec in use (the given one, or one derived from the model's
        input) and which it is: the API feeds images by it."""
        model, runner = self.ready(actor_id, route)
        assert model.metadata is not None
        meta = dict(model.metadata.raw)
        if model.labels is not None:
            meta["labels"] = model.labels
        spec, source = self._input_spec(model.metadata, runner)
        meta["input_spec"], meta["input_spec_source"] = spec, source
        # Every input and output as the engine declares them: the API lists them under /v2 (the parcel names one)
        meta["inputs"] = [s.spec().to_wire() for s in runner.engine.inputs]
        meta["outputs"] = [s.spec().to_wire() for s in runner.engine.outputs]
        if meta.get("outputs_probabilities") is None and getattr(runner.engine, "outputs_probabilities", False):
            meta["outputs_probabilities"] = True  # what the engine knows of its outputs, when the parcel is silent
        return meta

    @staticmethod
    def _input_spec(metadata: ModelMetadata, runner: ModelRunner | None) -> tuple[dict[str, Any] | None, str | None]:
        inputs = runner.engine.inputs if runner is not None else []
        return input_spec_for(metadata.raw, inputs[0] if len(inputs) == 1 else None, metadata.graph_encoding)

    def health(self) -> HealthCheckResponse:
        """Unhealthy while any model failed. `details.models` says each model's state as fields; the
        message says the same in a sentence for people and for 0.x hosts, which read only the message."""
        statuses = sorted((m.status() for m in self.models.values()), key=lambda m: m.name)
        failed = [m for m in statuses if m.state is ModelState.FAILED]
        details: dict[str, Any] = {HEALTH_MODELS: [m.to_wire() for m in statuses]}
        stats = {m.name: m.runner.statistics.to_triton() for m in self.models.values() if m.runner is not None}
        if stats:
            details[HEALTH_STATS] = stats
        if not statuses:
            return HealthCheckResponse(True, "healthy: no models linked", details)
        parts = []
        for state in (ModelState.READY, ModelState.LOADING):
            names = [m.name for m in statuses if m.state is state]
            if names:
                parts.append(f"{state.value}: {', '.join(names)}")
        parts += [f"retrying: {m.name} ({m.retry.note})" for m in statuses if m.retry is not None]
        if failed:
            parts.append("failed: " + "; ".join(f"{m.name} ({m.reason})" for m in failed))
        parts += [f"warning: {m.name}: {w}" for m in statuses for w in m.warnings]
        return HealthCheckResponse(not failed, ("unhealthy: " if failed else "healthy: ") + "; ".join(parts), details)


def _parcel_alias(parcel_name: str | None, specs: list[Any]) -> dict[str, str]:
    """{the metadata parcel's name: the engine's} for a model's one input or output when the two differ: the
    API's /v2 metadata shows the parcel's name, so a client sends that one."""
    if parcel_name and len(specs) == 1 and specs[0].name != parcel_name:
        return {parcel_name: specs[0].name}
    return {}
