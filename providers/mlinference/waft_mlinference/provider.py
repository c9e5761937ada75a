"""The `wasmcloud:mlinference` provider: `MlInference.Predict`, `ListModels` and `GetMetadata`.

Model failures (unknown model, bad tensor, still loading, overloaded, engine errors) are answered as
`InferenceOutput{result: {"error": {variant: message}}}` so the API actor can map each to an HTTP
status; only a payload that is not an InferenceInput at all is an RPC error (ProviderError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgpack

from waft.config import waft_home
from waft.interfaces.mlinference import InferenceInput, ModelError, ModelState, WireError
from waft.lattice.health import HealthCheckResponse
from waft.lattice.host_data import HostData
from waft.lattice.types import LinkDefinition
from waft.provider import InvocationContext, Provider, ProviderError, operation
from waft_mlinference import CONTRACT_ID
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import SettingsError, load_settings

log = logging.getLogger("waft.mlinference")


class MlInferenceProvider(Provider):
    contract_id = CONTRACT_ID
    # Above every model's max_concurrent + max_queue, so overload is decided per model (and answered),
    # not by invocations silently parking in NATS.
    max_concurrency = 1024

    def __init__(self, host_data: HostData) -> None:
        super().__init__(host_data)
        # A queued request that outlives the caller's RPC timeout is answered `overloaded` (nobody waits).
        timeout_s = max(1.0, host_data.default_rpc_timeout_ms / 1000)
        self.registry = ModelRegistry(cache_dir=waft_home() / "cache" / "mlinference", slot_timeout_s=timeout_s)
        #: How long LoadModel waits for the load it started: well inside the caller's RPC timeout.
        self.load_wait_s = 0.75 * host_data.default_rpc_timeout_ms / 1000

    async def put_link(self, link: LinkDefinition) -> None:
        try:
            settings = load_settings(link.values)
        except SettingsError as exc:
            raise ProviderError(f"mlinference link from {link.actor_id}: {exc}") from None
        self.registry.attach(link.actor_id, settings)

    async def delete_link(self, link: LinkDefinition) -> None:
        unloaded = await self.registry.detach(link.actor_id)
        log.info("link from %s deleted; unloaded %s", link.actor_id, ", ".join(unloaded) or "nothing (shared)")

    async def health(self) -> HealthCheckResponse:
        return self.registry.health()

    async def on_shutdown(self) -> None:
        await self.registry.close()

    @operation("MlInference.Predict")
    async def predict(self, ctx: InvocationContext, payload: bytes) -> bytes:
        try:
            request = InferenceInput.decode(payload)
        except WireError as exc:
            raise ProviderError(f"malformed MlInference.Predict request: {exc}") from None
        output = await self.registry.predict(ctx.actor_id, request)
        return output.encode()

    @operation("MlInference.ListModels")
    async def list_models(self, ctx: InvocationContext, payload: bytes) -> bytes:
        return msgpack.packb({"models": self.registry.describe(ctx.actor_id)}, use_bin_type=True)

    @operation("MlInference.LoadModel")
    async def load_model(self, ctx: InvocationContext, payload: bytes) -> bytes:
        """`{model}` -> `{}`: an unloaded route starts loading again (Triton's repository load)."""
        route = _model_of(payload, "MlInference.LoadModel")
        try:
            model = self.registry.load(ctx.actor_id, route)
            # Triton answers a load once it is done; wait for it within the caller's patience, and answer a
            # load that takes longer at once (ListModels and /v2/models/{m}/ready say when it is ready)
            if model.task is not None and not model.task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(model.task), self.load_wait_s)
            if model.state is ModelState.FAILED and model.error is not None:
                raise model.error
        except ModelError as exc:
            return msgpack.packb({"error": {exc.variant: exc.message}}, use_bin_type=True)
        return msgpack.packb({}, use_bin_type=True)

    @operation("MlInference.UnloadModel")
    async def unload_model(self, ctx: InvocationContext, payload: bytes) -> bytes:
        """`{model}` -> `{}`: the route's model is unloaded (Triton's repository unload)."""
        model = _model_of(payload, "MlInference.UnloadModel")
        try:
            await self.registry.unload(ctx.actor_id, model)
        except ModelError as exc:
            return msgpack.packb({"error": {exc.variant: exc.message}}, use_bin_type=True)
        return msgpack.packb({}, use_bin_type=True)

    @operation("MlInference.GetMetadata")
    async def get_metadata(self, ctx: InvocationContext, payload: bytes) -> bytes:
        """`{model}` -> the metadata map (+ labels), or `{"error": {variant: message}}` when the model is
        unknown, loading or failed (the same variants as Predict)."""
        model = _model_of(payload, "MlInference.GetMetadata")
        try:
            answer = self.registry.metadata(ctx.actor_id, model)
        except ModelError as exc:
            answer = {"error": {exc.variant: exc.message}}
        return msgpack.packb(answer, use_bin_type=True)


def _model_of(payload: bytes, what: str) -> str:
    try:
        request = msgpack.unpackb(payload, raw=False)
    except Exception as exc:
        raise ProviderError(f"malformed {what} request: {exc}") from None
    model = request.get("model") if isinstance(request, dict) else None
    if not isinstance(model, str) or not model:
        raise ProviderError(f"malformed {what} request: expected {{model: str}}")
    return model
