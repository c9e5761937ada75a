"""Issue 4 acceptance: the provider as a process under a real host, called over NATS by a wasm actor
(`Test.Call` -> `__host_call`), loading the built models from our bindle server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlinference_support import (
    MODELS,
    ZOO,
    MlClient,
    bindle_server,
    ensure_models,
    link_values,
    ml_client,
    mlcheck_actor,
)
from waft_testing import running_host

from waft.claims import KeyPair, Role
from waft.config import waft_home
from waft.ctl import CtlClient, wait_for_event
from waft.interfaces.mlinference import (
    CONTEXT_NOT_FOUND,
    CONTRACT_ID,
    CORRUPT_INPUT_TENSOR,
    INVALID_MODEL,
    MODEL_LOADING,
    OP_PREDICT,
    OVERLOADED,
    InferenceInput,
    InferenceOutput,
    Tensor,
    models_in_health,
    predict_request,
)
from waft.lattice import RpcError, WasmCloudEntity
from waft.lattice.types import LinkDefinition

pytestmark = pytest.mark.timeout(240)

X4 = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)


@dataclass
class Rig:
    host: Any
    provider: Any
    actor_key: str
    client: MlClient
    bindle_url: str

    async def link(self, actor_key: str, values: dict[str, str]) -> None:
        await self.host.put_link(LinkDefinition(actor_key, self.provider.public_key, CONTRACT_ID, "default", values))

    async def health(self) -> tuple[bool, str]:
        healthy = await self.host.providers.check_health(self.provider)
        return healthy, self.provider.health_message

    def model_states(self) -> list[tuple[str, str]]:
        """What the supervisor kept of the last health check, as fields."""
        return [(m.name, m.state.value) for m in models_in_health(self.provider.health_details) or []]


@contextlib.asynccontextmanager
async def rig(nats_url: str, prefix: str, tmp_path: Path, *, zoo: dict[str, str], instances: int = 1,
              gated: tuple[str, ...] = (), **link_options: Any) -> AsyncIterator[Rig]:
    cluster = KeyPair.generate(Role.CLUSTER)
    async with (bindle_server(tmp_path / "bindle", gated=gated) as bindle,
                running_host(nats_url=nats_url, prefix=prefix, cluster_seed=cluster.seed, rpc_timeout_s=20) as host):
        pool = await host.start_actor(mlcheck_actor(tmp_path), instances)
        provider = await host.start_provider("python:waft_mlinference")
        async with ml_client(nats_url, prefix, cluster, pool.public_key) as client:
            r = Rig(host, provider, pool.public_key, client, bindle.url)
            r.bindle = bindle  # type: ignore[attr-defined]
            await r.link(pool.public_key, link_values(zoo, bindle_url=bindle.url, **link_options))
            yield r


def onnx_direct(route: str, array: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    folder = MODELS / route
    model = next(folder.glob("*.onnx"))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: array})[0]


def plus3_direct(array: np.ndarray) -> np.ndarray:
    import tensorflow.compat.v1 as tf

    graph_def = tf.GraphDef()
    graph_def.ParseFromString((MODELS / "plus3" / "plus3.pb").read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.Session(graph=graph) as session:
        return session.run("output:0", {"input:0": array})


async def test_identity_plus3_effnet_equal_the_engines_run_directly(nats_url, lattice_prefix, tmp_path):
    ensure_models()
    rng = np.random.default_rng(4)
    image = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    # Expected answers before the rig: importing TensorFlow inside it would block its event loop for seconds.
    want_identity, want_plus3 = onnx_direct("identity", X4), plus3_direct(X4)
    want_effnet = onnx_direct("effnetlite0", image)
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=ZOO) as r:
        identity = await r.client.wait_ready(predict_request("identity", X4))
        assert identity.ok, identity.error
        assert identity.tensor.dimensions == [1, 4] and identity.tensor.value_types == ["ValueF32"]
        assert identity.tensor.to_numpy().tobytes() == want_identity.tobytes()

        plus3 = await r.client.wait_ready(predict_request("plus3", X4))
        assert plus3.ok, plus3.error
        np.testing.assert_array_equal(plus3.tensor.to_numpy(), np.array([[4, 5, 6, 7]], np.float32))
        assert plus3.tensor.to_numpy().tobytes() == want_plus3.tobytes()

        effnet = await r.client.wait_ready(predict_request("effnetlite0", image))
        assert effnet.ok, effnet.error
        assert effnet.tensor.dimensions == [1, 1000]
        got, want = effnet.tensor.to_numpy(), want_effnet
        assert float(np.max(np.abs(got - want))) <= 1e-5

        listed = {m["name"]: m for m in await r.client.list_models()}
        assert set(listed) == set(ZOO) and all(m["status"] == "ready" for m in listed.values())
        assert listed["effnetlite0"]["inputs"][0]["dimensions"] == [-1, 3, 224, 224]
        meta = await r.client.metadata("effnetlite0")
        assert meta["input_spec"]["size"] == [224, 224] and len(meta["labels"]) == 1000
        assert await r.health() == (True, "healthy: ready: effnetlite0, identity, plus3")


@pytest.mark.parametrize("batching", [False, True], ids=["unbatched", "batched"])
async def test_64_concurrent_requests_get_their_own_answers(nats_url, lattice_prefix, tmp_path, batching):
    zoo = {"identity": ZOO["identity"], "effnetlite0": ZOO["effnetlite0"]}
    options = {"effnetlite0": {"batch": {"max_items": 8, "max_delay_ms": 5}}} if batching else None
    rng = np.random.default_rng(64)
    images = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(64)]
    vectors = [np.array([[i, -i, i * 0.5, i + 0.25]], np.float32) for i in range(64)]
    # The expected answers first: 64 runs inside the rig would block its event loop (host and NATS clients)
    # long enough on a busy machine for the server to drop them as stale.
    import onnxruntime as ort

    session = ort.InferenceSession(str(MODELS / "effnetlite0" / "efficientnet-lite0.onnx"))
    wants = [session.run(None, {"input": image})[0] for image in images]
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=zoo, options=options) as r:
        await r.client.wait_ready(predict_request("identity", X4))
        await r.client.wait_ready(predict_request("effnetlite0", images[0]))
        # Straight to the provider as the linked actor, so all 64 are in flight there at once (through the
        # actor they would queue behind its 8 instances; that path is covered above).
        as_actor = WasmCloudEntity.actor(r.actor_key)
        target = WasmCloudEntity.provider(r.provider.public_key, CONTRACT_ID, "default")

        async def predict(payload: bytes) -> InferenceOutput:
            return InferenceOutput.decode(await r.client.rpc.invoke(as_actor, target, OP_PREDICT, payload,
                                                                    timeout=120))

        identities, effnets = await asyncio.gather(
            asyncio.gather(*(predict(predict_request("identity", v)) for v in vectors)),
            asyncio.gather(*(predict(predict_request("effnetlite0", im)) for im in images)))
        for vector, out in zip(vectors, identities, strict=True):
            assert out.ok, out.error
            assert out.tensor.to_numpy().tobytes() == vector.tobytes()
        for want, out in zip(wants, effnets, strict=True):
            assert out.ok, out.error
            assert out.tensor.dimensions == [1, 1000]
            assert float(np.max(np.abs(out.tensor.to_numpy() - want))) <= 1e-5
            assert int(np.argmax(out.tensor.to_numpy())) == int(np.argmax(want))
        listed = {m["name"]: m for m in await r.client.list_models()}
        if batching:  # every effnet request went through the batcher (how many per run is up to timing)
            assert listed["effnetlite0"]["batching"]["maxItems"] == 8
            assert listed["effnetlite0"]["batching"]["batchesRun"] >= 1
        else:
            assert listed["effnetlite0"]["batching"] is None


async def test_errors_name_expected_and_actual(nats_url, lattice_prefix, tmp_path):
    zoo = {"identity": ZOO["identity"], "effnetlite0": ZOO["effnetlite0"]}
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=zoo) as r:
        await r.client.wait_ready(predict_request("identity", X4))
        await r.client.wait_ready(predict_request("effnetlite0", np.zeros((1, 3, 224, 224), np.float32)))

        wrong_shape = await r.client.predict(predict_request("effnetlite0", np.zeros((1, 3, 200, 224), np.float32)))
        assert wrong_shape.error is not None and wrong_shape.error.variant == CORRUPT_INPUT_TENSOR
        assert "expects ValueF32 [?,3,224,224]" in wrong_shape.error.message
        assert "got ValueF32 [1,3,200,224]" in wrong_shape.error.message
        assert wrong_shape.tensor.dimensions == [] and wrong_shape.tensor.data == b""

        wrong_dtype = await r.client.predict(predict_request("identity", X4.astype(np.float64)))
        assert wrong_dtype.error is not None and wrong_dtype.error.variant == CORRUPT_INPUT_TENSOR
        assert "expects ValueF32 [1,4]" in wrong_dtype.error.message
        assert "got ValueF64 [1,4]" in wrong_dtype.error.message

        unknown = await r.client.predict(predict_request("mobilenet", X4))
        assert unknown.error is not None and unknown.error.variant == CONTEXT_NOT_FOUND
        assert "'mobilenet'" in unknown.error.message and "effnetlite0, identity" in unknown.error.message

        corrupt = InferenceInput("identity", Tensor([1, 4], ["ValueF32"], 0, X4.tobytes()[:-1])).encode()
        out = await r.client.predict(corrupt)
        assert out.error is not None and out.error.variant == CORRUPT_INPUT_TENSOR
        assert "data is 15 bytes" in out.error.message and "need 16" in out.error.message

        with pytest.raises(RpcError, match=r"malformed MlInference\.Predict"):
            await r.client.call("MlInference.Predict", b"\xc1 not msgpack")

        unsupported = InferenceInput("identity", Tensor([1, 4], ["ValueQ7"], 0, X4.tobytes())).encode()
        out = await r.client.predict(unsupported)
        assert out.error is not None and out.error.variant == CORRUPT_INPUT_TENSOR
        assert "unsupported value type 'ValueQ7'" in out.error.message and "ValueF32" in out.error.message

        big_endian = await r.client.predict(predict_request("identity", X4, flags=2))
        assert big_endian.ok and big_endian.tensor.flags == 2
        assert big_endian.tensor.data == X4.astype(">f4").tobytes()

        # After every refusal the provider is alive and serves both models.
        assert (await r.client.predict(predict_request("identity", X4))).tensor.to_numpy().tolist() == X4.tolist()
        effnet = await r.client.predict(predict_request("effnetlite0", np.zeros((1, 3, 224, 224), np.float32)))
        assert effnet.ok and effnet.tensor.dimensions == [1, 1000]
        assert await r.health() == (True, "healthy: ready: effnetlite0, identity")


async def test_model_loading_then_ready_and_health_reports_it(nats_url, lattice_prefix, tmp_path):
    zoo = {"identity": ZOO["identity"]}
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=zoo, gated=("identity_model",)) as r:
        loading = None
        for _ in range(300):  # until the link has arrived; the gate keeps the load from finishing
            try:
                loading = await r.client.predict(predict_request("identity", X4), timeout=10)
                break
            except RpcError:
                await asyncio.sleep(0.1)
        assert loading is not None and loading.error is not None
        assert loading.error.variant == MODEL_LOADING and "'identity'" in loading.error.message
        healthy, message = await r.health()
        assert healthy and "loading: identity" in message
        assert r.model_states() == [("identity", "loading")]
        async with CtlClient(r.client.nc, r.host.config.prefix).events() as events:
            r.bindle.release()  # type: ignore[attr-defined]
            ready = await r.client.wait_ready(predict_request("identity", X4))
            assert ready.ok
            assert await r.health() == (True, "healthy: ready: identity")
            # healthy before and after, so no passed/failed: the change is told by health_check_status
            # (from this check, or from the supervisor's own if it came first; a check racing the link's
            # arrival may tell "loading" first)
            told_states: list[tuple[str, str]] = []
            while told_states != [("identity", "ready")]:
                told = await wait_for_event(events, "health_check_status", public_key=r.provider.public_key)
                assert told.health is not None and told.health.healthy and told.contract_id == CONTRACT_ID
                told_states = [(m.name, m.state.value) for m in models_in_health(told.health.details) or []]
        # the host keeps the provider's details and answers them in its inventory (what `ctl get` reads)
        [entry] = r.host.inventory()["providers"]
        assert entry["health_details"] == r.provider.health_details and r.model_states() == [("identity", "ready")]
        [model] = entry["health_details"]["models"]
        assert model["inputs"][0]["valueType"] == "ValueF32" and model["bindleId"] == ZOO["identity"]


async def test_failed_model_is_reported_and_answers_invalid_model(nats_url, lattice_prefix, tmp_path):
    zoo = {"identity": ZOO["identity"], "ghost": "no-such-model/1.0.0"}
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=zoo) as r:
        await r.client.wait_ready(predict_request("identity", X4))
        ghost = await r.client.wait_ready(predict_request("ghost", X4))
        assert ghost.error is not None and ghost.error.variant == INVALID_MODEL
        assert "no-such-model/1.0.0 not found" in ghost.error.message
        healthy, message = await r.health()
        assert not healthy
        assert "ready: identity" in message and "failed: ghost" in message and "not found" in message
        assert r.model_states() == [("ghost", "failed"), ("identity", "ready")]


async def test_overloaded_when_limit_and_queue_are_full(nats_url, lattice_prefix, tmp_path):
    zoo = {"effnetlite0": ZOO["effnetlite0"]}
    options = {"effnetlite0": {"max_concurrent": 1, "max_queue": 0}}
    image = np.zeros((1, 3, 224, 224), np.float32)
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=zoo, instances=8, options=options) as r:
        await r.client.wait_ready(predict_request("effnetlite0", image))
        overloaded = None
        for _ in range(50):  # 8 actor instances calling at once: some find the single slot taken
            outs = await asyncio.gather(*(r.client.predict(predict_request("effnetlite0", image)) for _ in range(16)))
            assert all(o.ok or o.error.variant == OVERLOADED for o in outs), [o.error for o in outs]
            overloaded = next((o for o in outs if not o.ok), None)
            if overloaded is not None:
                break
        assert overloaded is not None and overloaded.error is not None
        assert "max_concurrent 1" in overloaded.error.message and "max_queue 0" in overloaded.error.message


async def test_link_delete_unloads_unless_another_actor_shares_the_model(nats_url, lattice_prefix, tmp_path):
    zoo = {"identity": ZOO["identity"]}
    async with rig(nats_url, lattice_prefix, tmp_path, zoo=zoo) as r:
        await r.client.wait_ready(predict_request("identity", X4))
        (tmp_path / "other").mkdir()
        other = await r.host.start_actor(mlcheck_actor(tmp_path / "other"))
        await r.link(other.public_key, link_values(zoo, bindle_url=r.bindle_url))
        second = MlClient(r.client.nc, r.client.rpc, other.public_key)
        assert (await second.wait_ready(predict_request("identity", X4))).ok

        await r.host.delete_link(r.actor_key, CONTRACT_ID, "default")
        for _ in range(100):
            try:
                await r.client.predict(predict_request("identity", X4), timeout=5)
            except RpcError:
                break  # the provider no longer knows the first actor
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the deleted link still answers")
        assert (await second.predict(predict_request("identity", X4))).ok  # shared: still loaded
        assert "ready: identity" in (await r.health())[1]

        await r.host.delete_link(other.public_key, CONTRACT_ID, "default")
        for _ in range(100):
            if (await r.health())[1] == "healthy: no models linked":
                break
            await asyncio.sleep(0.05)
        assert await r.health() == (True, "healthy: no models linked")


async def second_actor(r: Rig, tmp_path: Path, name: str, values: dict[str, str]) -> MlClient:
    (tmp_path / name).mkdir()
    actor = await r.host.start_actor(mlcheck_actor(tmp_path / name))
    await r.link(actor.public_key, values)
    return MlClient(r.client.nc, r.client.rpc, actor.public_key)


async def wait_health(r: Rig, fragment: str) -> tuple[bool, str]:
    for _ in range(600):
        healthy, message = await r.health()
        if fragment in message:
            return healthy, message
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never said {fragment!r}: {message}")


async def push_corrupt_model(bindle_url: str, tmp_path: Path) -> str:
    """identity's bindle renamed `corrupt_model/0.1.0`, its model parcel replaced by garbage bytes."""
    import hashlib
    import shutil

    from waft.bindle.client import BindleClient
    from waft.cli.models_cmd import push_model

    folder = tmp_path / "corrupt"
    shutil.copytree(MODELS / "identity", folder)
    onnx = folder / "identity_input_output.onnx"
    old = onnx.read_bytes()
    garbage = b"\x08\x07garbage, not a protobuf \xff\xfe" * 8
    onnx.write_bytes(garbage)
    invoice = (folder / "invoice.toml").read_text()
    invoice = invoice.replace('name = "identity_model"', 'name = "corrupt_model"')
    invoice = invoice.replace('version = "0.2.0"', 'version = "0.1.0"')
    invoice = invoice.replace(hashlib.sha256(old).hexdigest(), hashlib.sha256(garbage).hexdigest())
    invoice = invoice.replace(f"size = {len(old)}\n", f"size = {len(garbage)}\n")
    (folder / "invoice.toml").write_text(invoice)
    async with BindleClient(bindle_url, cache_dir=tmp_path / "corrupt-push-cache") as client:
        await push_model(client, folder)
    return "corrupt_model/0.1.0"


async def test_corrupt_model_parcel_fails_that_model_only(nats_url, lattice_prefix, tmp_path):
    async with rig(nats_url, lattice_prefix, tmp_path, zoo={"identity": ZOO["identity"]}) as r:
        await r.client.wait_ready(predict_request("identity", X4))
        corrupt_id = await push_corrupt_model(r.bindle_url, tmp_path)
        other = await second_actor(r, tmp_path, "other", link_values(
            {"broken": corrupt_id, "identity": ZOO["identity"]}, bindle_url=r.bindle_url))

        broken = await other.wait_ready(predict_request("broken", X4))
        assert broken.error is not None and broken.error.variant == INVALID_MODEL
        assert "model 'broken' (corrupt_model/0.1.0) failed to load" in broken.error.message
        assert "onnxruntime cannot load" in broken.error.message
        meta = await other.metadata("broken")
        assert list(meta["error"]) == [INVALID_MODEL]

        assert (await other.wait_ready(predict_request("identity", X4))).ok  # same link, other model
        assert (await r.client.predict(predict_request("identity", X4))).ok  # other actor
        healthy, message = await wait_health(r, "failed: broken")
        assert not healthy and "ready: identity" in message and "onnxruntime cannot load" in message


async def test_bindle_down_at_link_time_is_retried_then_reported(nats_url, lattice_prefix, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/"
    # Not cached here: an invoice an earlier test fetched would load from the cache with the server down
    # (tests/mlinference/test_cached_models.py), which is not what this test is about.
    shutil.rmtree(waft_home() / "cache" / "mlinference" / "invoices", ignore_errors=True)
    async with rig(nats_url, lattice_prefix, tmp_path, zoo={"identity": ZOO["identity"]}) as r:
        await r.client.wait_ready(predict_request("identity", X4))
        values = link_values({"effnetlite0": ZOO["effnetlite0"]}, bindle_url=down_url)
        values |= {"load_attempts": "3", "load_backoff_ms": "20"}
        other = await second_actor(r, tmp_path, "other", values)

        healthy, message = await wait_health(r, "failed: effnetlite0")
        assert not healthy and "ready: identity" in message
        assert f"cannot reach the bindle server at {down_url}" in message
        assert "gave up after 3 attempts" in message
        out = await other.wait_ready(predict_request("effnetlite0", np.zeros((1, 3, 224, 224), np.float32)))
        assert out.error is not None and out.error.variant == INVALID_MODEL
        assert "efficientnet-lite0/0.1.0" in out.error.message and "gave up after 3 attempts" in out.error.message
        listed = await other.list_models()
        assert listed[0]["status"] == "failed" and "retrying" not in listed[0]

        assert (await r.client.predict(predict_request("identity", X4))).ok  # the provider serves on
