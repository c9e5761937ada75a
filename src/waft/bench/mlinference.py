"""Issue 4's benchmark: effnetlite0 `MlInference.Predict` through the provider vs onnxruntime in-process.

Ours: a signed lattice invocation to the mlinference provider process (as the linked actor), which
decodes the 600 KB tensor, checks it, runs the model in its thread pool and answers over NATS; also
the full path through the wasm actor's `__host_call`. Baseline: the same model in an onnxruntime
InferenceSession in this process, same default session options (a direct call for latency, a thread
per caller for throughput). Measured interleaved in one run, as `waft.bench.common` does; < 60 s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from waft.bench.common import latency_pair, percentile, row, throughput_pair
from waft.claims import KeyPair, Role, sign_actor
from waft.embedded_nats import EmbeddedNats
from waft.host.host import Host, HostConfig
from waft.lattice import LatticeConfig, LatticeRpc, LinkDefinition, WasmCloudEntity
from waft.lattice.codec import pack
from waft.mlwire import CONTRACT_ID, MODEL_LOADING, OP_PREDICT, InferenceOutput, predict_request

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "build" / "models"
ROUTE, BINDLE_ID = "effnetlite0", "efficientnet-lite0/0.1.0"


def _actor(tmp: Path) -> str:
    """hostcheck re-signed with the mlinference capability (its build claims only `waft:test`)."""
    module = (ROOT / "build" / "actors" / "hostcheck.wasm").read_bytes()
    path = tmp / "mlbench_s.wasm"
    path.write_bytes(sign_actor(module, issuer=KeyPair.generate(Role.ACCOUNT), subject=KeyPair.generate(Role.MODULE),
                                name="mlbench", caps=[CONTRACT_ID]))
    return str(path)


async def run() -> list[dict[str, object]]:
    import tempfile

    rows: list[dict[str, object]] = []
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    request = predict_request(ROUTE, image)
    session = ort.InferenceSession(str(MODELS / ROUTE / "efficientnet-lite0.onnx"), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: image}
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedNats() as server:
            cluster = KeyPair.generate(Role.CLUSTER)
            host = Host(HostConfig(nats_url=server.url, prefix="mlbench", cluster_seed=cluster.seed,
                                   rpc_timeout_s=20))
            task = asyncio.create_task(host.run())
            try:
                await host.wait_ready()
                pool = await host.start_actor(_actor(Path(tmp)), 8)
                provider = await host.start_provider("python:waft_mlinference")
                zoo = {"models": {"zoo": {ROUTE: BINDLE_ID}}}
                await host.put_link(LinkDefinition(pool.public_key, provider.public_key, CONTRACT_ID, "default",
                                                   {"config_json": json.dumps(zoo), "model_dir": str(MODELS)}))
                assert host.nc is not None
                rpc = LatticeRpc(host.nc, LatticeConfig("mlbench", cluster, "N" * 56, rpc_timeout_s=20))
                as_actor = WasmCloudEntity.actor(pool.public_key)
                target = WasmCloudEntity.provider(provider.public_key, CONTRACT_ID, "default")
                via_actor = pack({"binding": "default", "namespace": CONTRACT_ID, "operation": OP_PREDICT,
                                  "payload": request})
                caller = WasmCloudEntity.actor("M" + "A" * 55)

                async def ours() -> None:
                    out = InferenceOutput.decode(await rpc.invoke(as_actor, target, OP_PREDICT, request))
                    if out.error is not None:
                        raise RuntimeError(out.error)

                async def ours_via_actor() -> None:
                    await rpc.invoke(caller, as_actor, "Test.Call", via_actor)

                async def direct() -> None:
                    session.run(None, feeds)

                async def direct_threaded() -> None:
                    await asyncio.to_thread(session.run, None, feeds)

                for _ in range(600):  # the link arrives, then the model loads in the background
                    try:
                        out = InferenceOutput.decode(await rpc.invoke(as_actor, target, OP_PREDICT, request))
                        if out.error is None or out.error.variant != MODEL_LOADING:
                            break
                    except Exception:
                        pass
                    await asyncio.sleep(0.1)

                lat = await latency_pair(ours, direct, rounds=6, per_round=15, warmup=10)
                rows.append(row("effnetlite0 Predict via provider over NATS, concurrency 1, p50",
                                percentile(lat.ours, 50) * 1e3, percentile(lat.baseline, 50) * 1e3, "ms",
                                goal="<= 1.3x onnxruntime in-process"))
                full = await latency_pair(ours_via_actor, direct, rounds=4, per_round=10, warmup=5)
                rows.append(row("effnetlite0 client -> actor -> provider, concurrency 1, p50",
                                percentile(full.ours, 50) * 1e3, percentile(full.baseline, 50) * 1e3, "ms",
                                goal="whole lattice path vs in-process"))
                ours_rate, base_rate = await throughput_pair(ours, direct_threaded, concurrency=8, duration=2.0,
                                                             rounds=3)
                rows.append(row("effnetlite0 Predict via provider over NATS, concurrency 8, throughput",
                                ours_rate, base_rate, "req/s", lower_is_better=False,
                                goal=">= 0.8x onnxruntime in-process"))
            finally:
                host.stop()
                await task
    return rows


if __name__ == "__main__":
    for r in asyncio.run(run()):
        print(r)
