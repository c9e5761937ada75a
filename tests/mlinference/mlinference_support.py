"""Helpers for the mlinference tests: a bindle server holding the built models (optionally gated, to hold
a model in `loading`), the hostcheck actor re-signed with the mlinference capability, and a lattice
client that calls the provider through the actor's `Test.Call` (a real `__host_call`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import nats
import numpy as np
from aiohttp import web
from waft_mlinference.engines import IOSpec
from waft_testing import ROOT, built_actor, trusted_account

from waft.claims import KeyPair, Role, sign_actor
from waft.interfaces.mlinference import (
    CONTRACT_ID,
    MODEL_LOADING,
    ONNX_ERROR,
    InferenceOutput,
    ModelStatus,
    models_in_health,
)
from waft.lattice import LatticeConfig, LatticeRpc, RpcError, WasmCloudEntity
from waft.lattice.codec import pack
from waft.lattice.health import HealthCheckResponse

MODELS = ROOT / "build" / "models"
ZOO = {"identity": "identity_model/0.2.0", "plus3": "plus3/0.1.0", "effnetlite0": "efficientnet-lite0/0.1.0"}
CALLER = WasmCloudEntity.actor("M" + "A" * 55)


def health_models(report: HealthCheckResponse) -> list[ModelStatus]:
    """The models a health report lists as fields: what the dashboard reads (never the message)."""
    models = models_in_health(report.details)
    assert models is not None, f"health has no model list: {report}"
    return models


def states(report: HealthCheckResponse) -> list[tuple[str, str]]:
    return [(m.name, m.state.value) for m in health_models(report)]


def ensure_models() -> Path:
    """The built models; built on demand so a bare `pytest` works too."""
    if not all((MODELS / d / "invoice.toml").is_file() for d in ("identity", "plus3", "effnetlite0")):
        import subprocess
        import sys

        subprocess.run([sys.executable, str(ROOT / "models" / "build.py")], check=True, timeout=600)
    return MODELS


def mlcheck_actor(tmp_path: Path) -> str:
    """hostcheck, signed with `wasmcloud:mlinference` (its own build claims only `waft:test`)."""
    module = built_actor("hostcheck", signed=False).read_bytes()
    signed = sign_actor(module, issuer=trusted_account(), subject=KeyPair.generate(Role.MODULE),
                        name="mlcheck", caps=[CONTRACT_ID])
    out = tmp_path / "mlcheck_s.wasm"
    out.write_bytes(signed)
    return str(out)


def link_values(zoo: dict[str, str], *, bindle_url: str | None = None, model_dir: Path | None = None,
                options: dict[str, Any] | None = None, defaults: dict[str, Any] | None = None) -> dict[str, str]:
    models: dict[str, Any] = {"zoo": zoo}
    if options:
        models["options"] = options
    if defaults:
        models["defaults"] = defaults
    values = {"config_json": json.dumps({"models": models})}
    if bindle_url:
        values["bindle_url"] = bindle_url
    if model_dir:
        values["model_dir"] = str(model_dir)
    return values


@dataclass
class BindleFixture:
    """Our bindle server in this event loop, holding the built models. Invoice GETs for ids in `gated`
    wait until `release()`: the provider's load then stays in `loading` for as long as the test likes."""

    url: str
    gated: set[str] = field(default_factory=set)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.gate.set()


@contextlib.asynccontextmanager
async def bindle_server(directory: Path, routes: tuple[str, ...] = ("identity", "plus3", "effnetlite0"),
                        gated: tuple[str, ...] = ()) -> AsyncIterator[BindleFixture]:
    from waft.bindle.client import BindleClient
    from waft.bindle.server import ServerConfig, create_app
    from waft.cli.models_cmd import push_model

    app = create_app(ServerConfig(directory=directory))
    fixture = BindleFixture("", set(gated))

    @web.middleware
    async def gate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET" and any(bid in request.path for bid in fixture.gated):
            await asyncio.wait_for(fixture.gate.wait(), 120)
        return await handler(request)

    app.middlewares.append(gate)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fixture.url = f"http://127.0.0.1:{port}/v1/"
    try:
        models = ensure_models()
        async with BindleClient(fixture.url, cache_dir=directory / "push-cache") as client:
            for route in routes:
                await push_model(client, models / route)
        yield fixture
    finally:
        fixture.release()
        await runner.cleanup()


class MlClient:
    """Calls the provider as the test actor does: client -> actor `Test.Call` -> `__host_call` -> provider."""

    def __init__(self, nc: nats.NATS, rpc: LatticeRpc, actor_key: str) -> None:
        self.nc, self.rpc, self.actor_key = nc, rpc, actor_key

    async def call(self, operation: str, payload: bytes, *, timeout: float = 30) -> bytes:
        body = pack({"binding": "default", "namespace": CONTRACT_ID, "operation": operation, "payload": payload})
        return await self.rpc.invoke(CALLER, WasmCloudEntity.actor(self.actor_key), "Test.Call", body,
                                     timeout=timeout)

    async def predict(self, payload: bytes, *, timeout: float = 30) -> InferenceOutput:
        return InferenceOutput.decode(await self.call("MlInference.Predict", payload, timeout=timeout))

    async def list_models(self) -> list[dict[str, Any]]:
        return msgpack.unpackb(await self.call("MlInference.ListModels", pack({})), raw=False)["models"]

    async def metadata(self, model: str) -> dict[str, Any]:
        return msgpack.unpackb(await self.call("MlInference.GetMetadata", pack({"model": model})), raw=False)

    async def wait_ready(self, payload: bytes, *, attempts: int = 600) -> InferenceOutput:
        """Predict until the link has arrived and the model is no longer loading (polls, never times)."""
        last: object = None
        for _ in range(attempts):
            try:
                out = await self.predict(payload, timeout=10)
            except RpcError as exc:  # the link not delivered yet
                last = exc
            else:
                if out.error is None or out.error.variant != MODEL_LOADING:
                    return out
                last = out.error
            await asyncio.sleep(0.1)
        raise AssertionError(f"model never became ready: {last}")


@contextlib.asynccontextmanager
async def ml_client(nats_url: str, prefix: str, cluster: KeyPair, actor_key: str) -> AsyncIterator[MlClient]:
    nc = await nats.connect(nats_url)
    try:
        yield MlClient(nc, LatticeRpc(nc, LatticeConfig(prefix, cluster, "N" * 56, rpc_timeout_s=30)), actor_key)
    finally:
        await nc.close()


class GatedEngine:
    """Doubles its input; each run waits for `gate`, so tests decide when runs finish (no timing)."""

    encoding, target, error_variant, warning = "onnx", "cpu", ONNX_ERROR, None

    def __init__(self, shape: tuple[int | None, ...] = (None, 4)) -> None:
        self.inputs = [IOSpec("x", np.dtype(np.float32), shape)]
        self.outputs = [IOSpec("y", np.dtype(np.float32), shape)]
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)
        self.calls: list[tuple[int, ...]] = []
        self.fail: Exception | None = None

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        self.calls.append(array.shape)
        self.started.release()
        assert self.gate.wait(60)
        if self.fail is not None:
            raise self.fail
        return [array * 2]

    def close(self) -> None:
        pass


async def started(engine: GatedEngine) -> None:
    assert await asyncio.to_thread(engine.started.acquire, True, 60)
