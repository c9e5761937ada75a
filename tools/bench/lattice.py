"""Issue 2's benchmark: actor -> provider -> actor round trips vs bare nats-py request/reply.

Ours: a client invokes the hostcheck actor's `Test.Call`, whose guest makes a `__host_call` to the
echo provider and returns its answer: two signed lattice hops (client -> host, host -> provider),
msgpack and claims on each. Baseline: the same bytes echoed by a bare nats-py responder in its own
process (as a provider is), one hop.
Also reported: the host-call leg alone (actor -> provider -> actor, measured as ours minus a plain
`Test.Echo` of the actor), against the same single bare hop.
"""

from __future__ import annotations

import asyncio
import os
import sys

import nats

from tools.bench.common import latency_pair, percentile, row
from tools.paths import ROOT, SUPPORT
from waft.claims import KeyPair, Role
from waft.embedded_nats import EmbeddedNats
from waft.host.host import Host, HostConfig
from waft.lattice import LatticeConfig, LatticeRpc, LinkDefinition, WasmCloudEntity
from waft.lattice.codec import pack


def support_env() -> dict[str, str]:
    """The environment with the test doubles importable: the host imports the echo provider's module to
    read its contract, and both doubles run as `python -m` children."""
    path = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


async def run() -> list[dict[str, object]]:
    # This lab tool (never the product) changes its own environment so the host's provider child sees the doubles.
    os.environ.update(PYTHONPATH=support_env()["PYTHONPATH"])
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    rows: list[dict[str, object]] = []
    actor_path = ROOT / "build" / "actors" / "hostcheck_s.wasm"
    async with EmbeddedNats() as server:
        cluster = KeyPair.generate(Role.CLUSTER)
        host = Host(HostConfig(nats_url=server.url, prefix="bench", cluster_seed=cluster.seed, rpc_timeout_s=20,
                               python_providers=["echo_provider"]))
        task = asyncio.create_task(host.run())
        nc = await nats.connect(server.url)
        try:
            await host.wait_ready()
            pool = await host.start_actor(str(actor_path))
            provider = await host.start_provider("python:echo_provider")  # a test double, on PYTHONPATH below
            await host.put_link(LinkDefinition(pool.public_key, provider.public_key, "waft:test"))
            rpc = LatticeRpc(nc, LatticeConfig("bench", cluster, "N" * 56, rpc_timeout_s=20))
            target = WasmCloudEntity.actor(pool.public_key)
            caller = WasmCloudEntity.actor("M" + "A" * 55)

            responder = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bare_responder", server.url, "bench.bare", env=support_env(),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            assert responder.stdout is not None
            await asyncio.wait_for(responder.stdout.readline(), 30)
            for size, label in ((100, "100 B"), (600 * 1024, "600 KB")):
                body = os.urandom(size)
                call = pack({"binding": "default", "namespace": "waft:test", "operation": "Test.Echo",
                             "payload": body})
                for _ in range(200):  # wait until the provider has its link
                    try:
                        await rpc.invoke(caller, target, "Test.Call", call)
                        break
                    except Exception:
                        await asyncio.sleep(0.05)

                async def ours(call: bytes = call) -> None:
                    await rpc.invoke(caller, target, "Test.Call", call)

                async def actor_only(body: bytes = body) -> None:
                    await rpc.invoke(caller, target, "Test.Echo", body)

                async def bare(body: bytes = body) -> None:
                    await nc.request("bench.bare", body, timeout=20)

                rounds = 10 if size < 1000 else 6
                full = await latency_pair(ours, bare, rounds=rounds, per_round=40 if size < 1000 else 15)
                leg = await latency_pair(actor_only, bare, rounds=rounds, per_round=40 if size < 1000 else 15)
                ours_p50, bare_p50 = percentile(full.ours, 50), percentile(full.baseline + leg.baseline, 50)
                hostcall_p50 = max(0.0, ours_p50 - percentile(leg.ours, 50))
                rows.append(row(f"client -> actor -> provider -> actor -> client, {label}, p50", ours_p50 * 1e3,
                                bare_p50 * 1e3, "ms", goal="two lattice hops vs one bare hop"))
                rows.append(row(f"host call actor -> provider -> actor, {label}, p50", hostcall_p50 * 1e3,
                                bare_p50 * 1e3, "ms", goal="<= 1.5x bare round trip"))
            assert responder.stdin is not None
            responder.stdin.close()
            await asyncio.wait_for(responder.wait(), 10)
        finally:
            await nc.close()
            host.stop()
            await task
    return rows
