"""Issue 9 part 5a: no leaks. A host in its own process (`python -m waft host`) and the test provider
serve many signed invocations over NATS; their RSS at the end is within 10% of what it was after a
tenth of them, and their file descriptors and NATS subscriptions do not move at all.

Each request is the cheapest real path: even ones are `Test.Echo` on the hostcheck actor (client ->
NATS -> host -> wasm), odd ones `Test.Call` -> the test provider's `Test.Echo` (-> NATS -> provider and
back). RSS and fds come from /proc/<pid>/; subscriptions from nats-server's monitoring endpoint.

`WAFT_LEAK_REQUESTS` sets the total (default 100 000, as issue 9 asks: about two minutes on the quiet
2-core development machine, measured 2026-12-03: host RSS 83 172 -> 85 804 KiB, provider flat; up to
seven minutes when the machine is shared). The first checkpoint is always a tenth of the total.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import msgpack
import nats
import pytest
from waft_testing import built_actor

from waft.claims import Role, keystore
from waft.ctl import CtlClient
from waft.embedded_nats import EmbeddedNats
from waft.lattice import LatticeConfig, LatticeRpc, RpcError, WasmCloudEntity
from waft.lattice.connection import server_caught_up

TOTAL = int(os.environ.get("WAFT_LEAK_REQUESTS", "100000"))
CHECKPOINT = TOTAL // 10
CONCURRENCY = 16
WARMUP = 1000
PREFIX = "leaks"
CALLER = WasmCloudEntity.actor("M" + "A" * 55)
pytestmark = pytest.mark.timeout(900)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def subscriptions(monitor_url: str) -> dict[str, int]:
    """Subscriptions per named client connection, and the server's total."""
    with urllib.request.urlopen(f"{monitor_url.rstrip('/')}/connz?subs=1&limit=1000", timeout=5) as response:
        connz = json.load(response)
    counts = {conn.get("name", ""): len(conn.get("subscriptions_list") or []) for conn in connz["connections"]}
    with urllib.request.urlopen(f"{monitor_url.rstrip('/')}/subsz", timeout=5) as response:
        counts["(server total)"] = json.load(response)["num_subscriptions"]
    return counts


def snapshot(pids: dict[str, int], monitor_url: str) -> dict[str, object]:
    return {"rss_kib": {name: rss_kib(pid) for name, pid in pids.items()},
            "fds": {name: fd_count(pid) for name, pid in pids.items()},
            "subs": subscriptions(monitor_url)}


@contextlib.asynccontextmanager
async def host_process(nats_url: str, log: Path):
    """`python -m waft host` in its own process; SIGTERM on exit (it stops its provider with it)."""
    env = {**os.environ, "WAFT_RPC_TIMEOUT_MS": "15000"}  # a loaded shared machine must not fail requests
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "waft", "host", "--nats-url", nats_url, "-x", PREFIX,
            stdout=out, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, env=env)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), 10)


async def test_rss_fds_and_subscriptions_stay_flat(tmp_path, capsys):
    cluster = keystore.load_or_create("cluster", Role.CLUSTER)  # the key the CLI host loads too
    with EmbeddedNats(monitor_port=-1) as server:
        provider_pid = 0
        async with host_process(server.url, tmp_path / "host.log") as host:
            try:
                async with CtlClient.connect(server.url, PREFIX, timeout=10) as ctl:
                    hosts: list[dict] = []
                    for _ in range(60):
                        hosts = await ctl.get_hosts(wait=0.5)
                        if hosts:
                            break
                    assert hosts, (tmp_path / "host.log").read_text()[-2000:]
                    host_id = hosts[0]["id"]
                    await ctl.start_actor(host_id, str(built_actor("hostcheck")))
                    await ctl.start_provider(host_id, "python:waft_testprovider")
                    inventory: dict = {}
                    for _ in range(100):
                        inventory = await ctl.get_inventory(host_id)
                        if inventory["actors"] and inventory["providers"]:
                            break
                        await asyncio.sleep(0.1)
                    actor_id, provider_id = inventory["actors"][0]["id"], inventory["providers"][0]["id"]
                    await ctl.put_link(actor_id, provider_id, "waft:test")

                nc = await nats.connect(server.url)
                rpc = LatticeRpc(nc, LatticeConfig(PREFIX, cluster, "N" * 56))
                target = WasmCloudEntity.actor(actor_id)

                def call(operation: str, payload: bytes = b"") -> bytes:
                    return msgpack.packb({"binding": "default", "namespace": "waft:test", "operation": operation,
                                          "payload": payload})

                linked = None
                for _ in range(200):  # the provider answers once its link has arrived
                    with contextlib.suppress(RpcError):
                        linked = await rpc.invoke(CALLER, target, "Test.Call", call("Test.LinkValues"), timeout=5)
                        break
                    await asyncio.sleep(0.1)
                assert linked is not None, "the provider never answered through its link"
                provider_pid = int(msgpack.unpackb(linked)["pid"])
                pids = {"host": host.pid, "provider": provider_pid}

                sent = 0
                failures: list[str] = []

                async def worker(until: int) -> None:
                    nonlocal sent
                    while sent < until:
                        i = sent
                        sent += 1
                        payload = bytes([i % 251]) * (i % 2048)
                        try:
                            if i % 2:
                                answer = await rpc.invoke(CALLER, target, "Test.Call", call("Test.Echo", payload),
                                                          timeout=30)
                            else:
                                answer = await rpc.invoke(CALLER, target, "Test.Echo", payload, timeout=30)
                            if answer != payload:
                                failures.append(f"request {i}: wrong answer")
                        except RpcError as exc:
                            failures.append(f"request {i}: {exc}")

                async def run_until(count: int) -> None:
                    await asyncio.gather(*(worker(count) for _ in range(CONCURRENCY)))
                    await server_caught_up(nc)

                try:
                    await run_until(WARMUP)
                    await run_until(CHECKPOINT)
                    first = snapshot(pids, server.monitor_url)
                    await run_until(TOTAL)
                    last = snapshot(pids, server.monitor_url)
                finally:
                    await nc.close()
            finally:
                with capsys.disabled():
                    print(f"\nleaks: {TOTAL} requests; after {CHECKPOINT}: {locals().get('first')}; "
                          f"after {TOTAL}: {locals().get('last')}")

        if provider_pid:  # the host stopped its provider with it; never leave one behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(provider_pid, 0)
                await asyncio.sleep(2)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(provider_pid, signal.SIGKILL)
                    raise AssertionError("the provider outlived its host")

    assert not failures, failures[:5]
    assert sent >= TOTAL
    for name in pids:
        before, after = first["rss_kib"][name], last["rss_kib"][name]
        assert after <= before * 1.10, f"{name} RSS grew from {before} KiB to {after} KiB"
    assert last["fds"] == first["fds"]
    assert last["subs"] == first["subs"]
