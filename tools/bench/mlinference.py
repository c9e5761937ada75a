"""Issue 4's benchmark: effnetlite0 `MlInference.Predict` through the provider vs onnxruntime called directly.

Ours: a signed lattice invocation to the mlinference provider process (as the linked actor), which
decodes the 600 KB tensor, checks it, runs the model in its thread pool and answers over NATS; once
with micro-batching off (route `effnetlite0`) and once on (route `effnetlite0_batched`, max 8 rows,
2 ms), the same bindle loaded twice under different options by one provider. Baseline: the same model
in an onnxruntime InferenceSession in this process with default session options, called inline at
concurrency 1 and from one thread per caller above that.

Each of the three is driven in a closed loop at concurrency 1, 4 and 16; per-call latencies give p50
and p99, completions per second the throughput. The three are interleaved in rounds (as
`tools.bench.common` does) so drift on the shared machine hits them alike. About 60 s in all.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tools.bench.common import percentile, row
from tools.paths import MODELS, ROOT
from waft.claims import KeyPair, Role, keystore, sign_actor
from waft.embedded_nats import EmbeddedNats
from waft.host.host import Host, HostConfig
from waft.interfaces.mlinference import CONTRACT_ID, MODEL_LOADING, OP_PREDICT, InferenceOutput, predict_request
from waft.lattice import LatticeConfig, LatticeRpc, LinkDefinition, WasmCloudEntity

BINDLE_ID = "efficientnet-lite0/0.1.0"
PLAIN, BATCHED = "effnetlite0", "effnetlite0_batched"
BATCH = {"max_items": 8, "max_delay_ms": 2}
CONCURRENCY = (1, 4, 16)
ROUNDS, SECONDS = 3, 1.5  # per concurrency: 3 rounds x 3 contenders x 1.5 s

Call = Callable[[], Awaitable[object]]


def _actor(tmp: Path) -> str:
    """hostcheck re-signed with the mlinference capability (its build claims only `waft:test`)."""
    module = (ROOT / "build" / "actors" / "hostcheck.wasm").read_bytes()
    path = tmp / "mlbench_s.wasm"
    account = keystore.load_or_create("account", Role.ACCOUNT)  # the local account: the host's policy trusts it
    path.write_bytes(sign_actor(module, issuer=account, subject=KeyPair.generate(Role.MODULE),
                                name="mlbench", caps=[CONTRACT_ID]))
    return str(path)


async def closed_loop(call: Call, concurrency: int, duration: float) -> tuple[list[float], float]:
    """`concurrency` callers back to back for `duration`: each call's latency, and completions per second."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return latencies, len(latencies) / (time.perf_counter() - start)


async def run() -> list[dict[str, object]]:
    import tempfile

    rows: list[dict[str, object]] = []
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    session = ort.InferenceSession(str(MODELS / PLAIN / "efficientnet-lite0.onnx"), providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: image}
    threads = ThreadPoolExecutor(max(CONCURRENCY), thread_name_prefix="ort-direct")
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedNats() as server:
            cluster = KeyPair.generate(Role.CLUSTER)
            host = Host(HostConfig(nats_url=server.url, prefix="mlbench", cluster_seed=cluster.seed,
                                   rpc_timeout_s=20))
            task = asyncio.create_task(host.run())
            try:
                await host.wait_ready()
                pool = await host.start_actor(_actor(Path(tmp)), 1)
                provider = await host.start_provider("python:waft_mlinference")
                config = {"models": {"zoo": {PLAIN: BINDLE_ID, BATCHED: BINDLE_ID},
                                     "options": {BATCHED: {"batch": BATCH}}}}
                await host.put_link(LinkDefinition(pool.public_key, provider.public_key, CONTRACT_ID, "default",
                                                   {"config_json": json.dumps(config), "model_dir": str(MODELS)}))
                assert host.nc is not None
                rpc = LatticeRpc(host.nc, LatticeConfig("mlbench", cluster, "N" * 56, rpc_timeout_s=20))
                as_actor = WasmCloudEntity.actor(pool.public_key)
                target = WasmCloudEntity.provider(provider.public_key, CONTRACT_ID, "default")

                def via_provider(route: str) -> Call:
                    request = predict_request(route, image)

                    async def call() -> None:
                        out = InferenceOutput.decode(await rpc.invoke(as_actor, target, OP_PREDICT, request))
                        if out.error is not None:
                            raise RuntimeError(f"{route}: {out.error.variant}: {out.error.message}")

                    return call

                async def direct_inline() -> None:
                    session.run(None, feeds)

                async def direct_threaded() -> None:
                    await asyncio.get_running_loop().run_in_executor(threads, session.run, None, feeds)

                for route in (PLAIN, BATCHED):  # the link arrives, then each model loads in the background
                    request = predict_request(route, image)
                    for _ in range(600):
                        try:
                            out = InferenceOutput.decode(await rpc.invoke(as_actor, target, OP_PREDICT, request))
                            if out.error is None or out.error.variant != MODEL_LOADING:
                                break
                        except Exception:
                            pass
                        await asyncio.sleep(0.1)
                    else:
                        raise RuntimeError(f"{route} never loaded")

                contenders = {"off": via_provider(PLAIN), "on": via_provider(BATCHED)}
                for concurrency in CONCURRENCY:
                    direct = direct_inline if concurrency == 1 else direct_threaded
                    calls = {**contenders, "direct": direct}
                    for call in calls.values():  # warm up at this concurrency
                        await closed_loop(call, concurrency, 0.3)
                    lat: dict[str, list[float]] = {name: [] for name in calls}
                    rate: dict[str, list[float]] = {name: [] for name in calls}
                    for _ in range(ROUNDS):
                        for name, call in calls.items():
                            samples, per_s = await closed_loop(call, concurrency, SECONDS)
                            lat[name] += samples
                            rate[name].append(per_s)
                    base_p50, base_p99 = percentile(lat["direct"], 50) * 1e3, percentile(lat["direct"], 99) * 1e3
                    base_rate = statistics.median(rate["direct"])
                    for mode in ("off", "on"):
                        label = f"effnetlite0 Predict via provider, batching {mode}, concurrency {concurrency}"
                        p50_goal = "<= 1.15x onnxruntime direct (overhead <= 15%)" if concurrency == 1 else ""
                        rate_goal = ">= 0.95x onnxruntime direct" if concurrency == 16 else ""
                        rows.append(row(f"{label}, p50", percentile(lat[mode], 50) * 1e3, base_p50, "ms",
                                        goal=p50_goal))
                        rows.append(row(f"{label}, p99", percentile(lat[mode], 99) * 1e3, base_p99, "ms"))
                        rows.append(row(f"{label}, throughput", statistics.median(rate[mode]), base_rate, "req/s",
                                        lower_is_better=False, goal=rate_goal))
            finally:
                host.stop()
                await task
                threads.shutdown(wait=False)
    return rows


if __name__ == "__main__":
    for r in asyncio.run(run()):
        print(r)
