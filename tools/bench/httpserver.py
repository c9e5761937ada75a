"""Issue 5's benchmark: HTTP through the httpserver provider to the echo actor vs a bare aiohttp handler.

Ours: client -> provider process (aiohttp) -> NATS -> host -> echo actor (wasm) -> back, the whole
request path of a Waft HTTP app. Baseline: a bare aiohttp server in its own process (as the provider
is) answering the same JSON the echo actor builds, so the ratio is what the lattice hop, msgpack,
claims and the wasm actor add on top of serving HTTP in Python at all. Both run in the same run,
interleaved round by round, at concurrency 1 and 16; figures are requests/s and p50 latency.
Run alone with `python -m tools.bench httpserver`; `python -m tools.bench.httpserver --bare PORT` is the
baseline server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
from aiohttp import web

from tools.bench.common import percentile, row
from tools.paths import ROOT

CONCURRENCY = (1, 16)
#: Instances of the echo actor: one runs one request at a time, as a wasm instance does.
ACTOR_INSTANCES = 4
ROUNDS = 3
ROUND_S = 2.0
BODY = bytes(range(256))  # a small binary body, echoed back as base64
PATH = "/bench/echo?x=1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------- baseline
async def _bare_handler(request: web.Request) -> web.Response:
    """The echo actor's answer, built the same way (headers grouped and lowercased, body as base64)."""
    body = await request.read()
    path, _, query = request.raw_path.partition("?")
    header: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        header.setdefault(name.lower(), []).append(value)
    answer = {"method": request.method, "path": path, "queryString": query, "header": header,
              "body": base64.b64encode(body).decode(), "bodyLength": len(body)}
    return web.Response(body=json.dumps(answer, separators=(",", ":")).encode(), content_type="application/json")


def _serve_bare(port: int) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _bare_handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ---------------------------------------------------------------------------------------------- measuring
async def _wait_serving(session: aiohttp.ClientSession, url: str, timeout: float = 30) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            async with session.post(url, data=BODY) as response:
                if response.status == 200:
                    await response.read()
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout} s")
        await asyncio.sleep(0.1)


async def _closed_loop(session: aiohttp.ClientSession, url: str, concurrency: int,
                       duration: float) -> tuple[float, list[float]]:
    """Requests/s and per-request latencies of `concurrency` clients in a closed loop."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with session.post(url, data=BODY) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return len(latencies) / (time.perf_counter() - start), latencies


async def _compare(session: aiohttp.ClientSession, ours: str, baseline: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for concurrency in CONCURRENCY:
        for url in (ours, baseline):  # warm both: connections, the actor instance, the JIT-free paths
            await _closed_loop(session, url, concurrency, 0.5)
        rates: dict[str, list[float]] = {ours: [], baseline: []}
        latencies: dict[str, list[float]] = {ours: [], baseline: []}
        for _ in range(ROUNDS):
            for url in (ours, baseline):
                rate, samples = await _closed_loop(session, url, concurrency, ROUND_S)
                rates[url].append(rate)
                latencies[url].extend(samples)
        rows.append(row(f"HTTP echo requests/s, concurrency {concurrency}", statistics.median(rates[ours]),
                        statistics.median(rates[baseline]), "req/s", lower_is_better=False,
                        goal=">= 0.5x bare aiohttp" if concurrency == 16 else ""))
        rows.append(row(f"HTTP echo p50 latency, concurrency {concurrency}", percentile(latencies[ours], 50) * 1000,
                        percentile(latencies[baseline], 50) * 1000, "ms"))
    return rows


async def run() -> list[dict[str, object]]:
    from waft.claims import KeyPair, Role
    from waft.embedded_nats import EmbeddedNats
    from waft.host.host import Host, HostConfig
    from waft.lattice import LinkDefinition

    actor_path = ROOT / "build" / "actors" / "echo_s.wasm"
    if not actor_path.exists():
        await asyncio.to_thread(subprocess.run, [sys.executable, str(ROOT / "actors" / "build.py")],
                                check=True)
    ours_port, bare_port = _free_port(), _free_port()
    async with EmbeddedNats() as server:
        cluster = KeyPair.generate(Role.CLUSTER)
        host = Host(HostConfig(nats_url=server.url, prefix="benchhttp", cluster_seed=cluster.seed, rpc_timeout_s=20))
        host_task = asyncio.create_task(host.run())
        bare = await asyncio.create_subprocess_exec(sys.executable, "-m", "tools.bench.httpserver", "--bare",
                                                    str(bare_port), stdout=asyncio.subprocess.DEVNULL)
        try:
            await asyncio.wait_for(host.wait_ready(), 30)
            pool = await host.start_actor(str(actor_path), ACTOR_INSTANCES)
            provider = await host.start_provider("python:waft_httpserver")
            await host.put_link(LinkDefinition(pool.public_key, provider.public_key, "wasmcloud:httpserver", "default",
                                               {"address": f"127.0.0.1:{ours_port}", "access_log": "false"}))
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector,
                                             timeout=aiohttp.ClientTimeout(total=30)) as session:
                ours, baseline = f"http://127.0.0.1:{ours_port}{PATH}", f"http://127.0.0.1:{bare_port}{PATH}"
                await _wait_serving(session, ours)
                await _wait_serving(session, baseline)
                return await _compare(session, ours, baseline)
        finally:
            if bare.returncode is None:
                bare.terminate()
            try:
                await asyncio.wait_for(bare.wait(), 10)
            except TimeoutError:
                bare.kill()
                await bare.wait()
            host.stop()
            await asyncio.wait_for(host_task, 30)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        _serve_bare(int(sys.argv[2]))
    else:
        for entry in asyncio.run(run()):
            print(entry)
