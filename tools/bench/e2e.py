"""Issue 9's end-to-end benchmark: Waft's /effnetlite0/matches against a peer a user would pick instead.

Three systems classify the same four photos (build/bench-photos, JPEG q90) with the same ONNX file:
- the peer: BentoML serving tools/bench/peer/pipeline.py (Pillow + numpy + onnxruntime, softmax,
  top-5) from its own venv, build/peer/venv (see tools.bench.peer_setup and docs/peer.md);
- the in-process pipeline: that same code called directly from Python, no HTTP, the floor;
- Waft: `waft up` with the ML app (api -> preprocessor -> mlinference -> postprocessor), when this
  build has it (build/actors/api_s.wasm and the providers); otherwise a note row says what is missing.

Figures: p50 at concurrency 1 (sequential, interleaved blocks), the highest open-loop rate whose p99
stays <= 250 ms with no errors, p50/p99 at an equal offered rate, CPU time per request (every process
of each server, split by process for Waft: what bounds the max rate on few cores), and latency
percentiles against offered rate for all three, drawn to docs/benchmarks/latency.png by the peer venv's matplotlib.
Everything started here (peer, lattice) is stopped on the way out, also on failure or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tools.bench import peer_setup
from tools.bench.common import latency_pair, percentile, row
from tools.bench.cpu import TreeMeter
from tools.paths import built_actor_issuers
from waft.loadgen import LoadResult, open_loop

ROOT = peer_setup.ROOT
MODELS = peer_setup.MODELS
P99_BOUND = 0.250
MANIFEST = ROOT / "deploy" / "ml-app.yaml"
PLOT = ROOT / "docs" / "benchmarks" / "latency.png"
WORK = ROOT / "build" / "bench-e2e"
ROUTE = "effnetlite0"
#: Offered rates for the latency curve, as fractions of the peer's max rate.
CURVE = (0.25, 0.5, 0.75, 1.0, 1.25)
STEP_S = 4.0  # seconds per open-loop step of the max-rate search
CURVE_STEP_S = 3.0  # and of the latency curve
CPU_STEP_S = 8.0  # open-loop seconds over which CPU per request is measured
CPU_LOCAL_CALLS = 60  # sequential in-process calls for its CPU per request


def _log(message: str) -> None:
    print(f"  e2e: {message}", file=sys.stderr, flush=True)


# --- Waft's end-to-end path ----------------------------------------------------------------------

def waft_missing() -> list[str]:
    """What this build lacks for `waft up --app deploy/ml-app.yaml` to serve /matches (empty: all there)."""
    needed = (ROOT / "build" / "actors" / "api_s.wasm",
              ROOT / "providers" / "httpserver" / "waft_httpserver" / "__main__.py",
              ROOT / "providers" / "mlinference" / "waft_mlinference" / "__main__.py")
    missing = [str(p.relative_to(ROOT)) for p in needed if not p.exists()]
    if not missing and MANIFEST.is_file():
        for actor in yaml.safe_load(MANIFEST.read_text()).get("actors", []):
            image = str(actor.get("image", ""))
            if image.startswith(("python:", "/")) or "://" in image or ":" in image.split("/")[0]:
                continue
            path = (MANIFEST.parent / image).resolve()
            if not path.exists():
                missing.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))
    return missing


def bench_manifest(port: int, out: Path) -> Path:
    """deploy/ml-app.yaml with absolute image paths, the HTTP link on 127.0.0.1:`port`, only effnetlite0 loaded."""
    doc = yaml.safe_load(MANIFEST.read_text())
    for actor in doc.get("actors", []):
        image = str(actor["image"])
        if image.startswith(("./", "../")) or image.endswith(".wasm"):
            actor["image"] = str((MANIFEST.parent / image).resolve())
    for link in doc.get("links", []):
        values = link.setdefault("values", {})
        if link.get("contract") == "wasmcloud:httpserver":
            values["address"] = f"127.0.0.1:{port}"
        if link.get("contract") == "wasmcloud:mlinference" and "config_json" in values:
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                config = json.loads(values["config_json"])
                zoo = config["models"]["zoo"]
                if ROUTE in zoo:  # the peer loads one model; so does the lattice
                    config["models"]["zoo"] = {ROUTE: zoo[ROUTE]}
                    values["config_json"] = json.dumps(config)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _waft_command() -> list[str]:
    script = Path(sys.executable).parent / "waft"
    return [str(script)] if script.exists() else [sys.executable, "-m", "waft"]


@dataclass(frozen=True)
class RunningLattice:
    url: str  # /effnetlite0/matches
    pid: int  # `waft up`: the root of every process of the lattice


@contextlib.asynccontextmanager
async def waft_lattice(body: bytes, *, ready_timeout: float = 180.0) -> AsyncIterator[RunningLattice]:
    """`waft up` on free ports with a private WAFT_HOME; yields once /matches classifies."""
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="waft-e2e-") as tmp:
        port = peer_setup.free_port()
        manifest = bench_manifest(port, Path(tmp) / "ml-app.yaml")
        env = {"WAFT_MODELS_DIR": str(MODELS), **os.environ, "WAFT_HOME": str(Path(tmp) / "home"),
               "WAFT_TRUSTED_ISSUERS": ",".join(filter(None, (os.environ.get("WAFT_TRUSTED_ISSUERS"),
                                                               built_actor_issuers())))}
        command = [*_waft_command(), "up", "--nats-port", "0", "--bindle-address", "127.0.0.1:0", "--no-dashboard",
                   "--push-models", "--app", str(manifest)]
        log_path = WORK / "waft-up.log"
        process = _spawn(command, env, log_path)
        try:
            url = f"http://127.0.0.1:{port}/{ROUTE}/matches"
            started = time.monotonic()
            await _wait_classifies(url, body, process, ready_timeout, log_path)
            _log(f"lattice ready in {time.monotonic() - started:.1f} s at {url}")
            yield RunningLattice(url, process.pid)
        finally:
            await asyncio.to_thread(peer_setup.stop_group, process, 20.0)


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` in its own process group (so stop_group reaches every child), output in `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_classifies(url: str, body: bytes, process: subprocess.Popen[bytes], timeout: float,
                           log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"`waft up` exited with {process.returncode}; see {log_path}")
            try:
                async with session.put(url, data=body) as response:
                    text = await response.text()
                    if response.status == 200 and isinstance(json.loads(text), list):
                        return
                    last = f"HTTP {response.status}: {text[:200]}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not classify within {timeout:g} s (last: {last}); see {log_path}")


# --- callers -------------------------------------------------------------------------------------

def http_caller(session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes]) -> Callable[[], Any]:
    cycle = itertools.cycle(bodies)

    async def call() -> None:
        async with session.put(url, data=next(cycle)) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}")

    return call


async def top1_labels(session: aiohttp.ClientSession, url: str, bodies: Sequence[bytes]) -> list[str]:
    labels = []
    for body in bodies:
        async with session.put(url, data=body) as response:
            answer = await response.json(content_type=None)
            labels.append(answer[0]["label"] if response.status == 200 and answer else f"HTTP {response.status}")
    return labels


def local_caller(pipeline: Any, bodies: Sequence[bytes]) -> Callable[[], Any]:
    """The in-process pipeline called directly, on the event loop's thread: nothing between caller and work."""
    cycle = itertools.cycle(bodies)

    async def call() -> None:
        pipeline.matches(next(cycle))

    return call


async def open_loop_local(fn: Callable[[bytes], object], rate: float, duration: float, bodies: Sequence[bytes],
                          executor: ThreadPoolExecutor) -> LoadResult:
    """load.open_loop's schedule for the in-process pipeline: request i is due at start + i/rate and runs
    on `executor` (one thread per core, as a minimal in-process server would); latency counts from due."""
    result = LoadResult(rate, duration)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(due: float, body: bytes) -> None:
        try:
            await loop.run_in_executor(executor, fn, body)
            status = "200"
        except Exception as exc:
            status = f"error:{type(exc).__name__}"
        result.statuses[status] += 1
        if status == "200":
            result.latencies.append(loop.time() - due)

    async with asyncio.TaskGroup() as tasks:
        for i, body in zip(range(max(1, int(rate * duration))), itertools.cycle(bodies), strict=False):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result.sent += 1
            tasks.create_task(one(due, body))
    result.elapsed = loop.time() - start
    return result


# --- CPU per request ------------------------------------------------------------------------------

async def cpu_per_request(root: int, url: str, rate: float, bodies: Sequence[bytes]) -> tuple[float, Counter[str]]:
    """Milliseconds of CPU (user + system, every process under `root`) per answered request at `rate`,
    and the same split by process label."""
    meter = TreeMeter(root)
    meter.start()
    result = await open_loop(url, rate, CPU_STEP_S, bodies)
    by_label = meter.stop()
    answered = max(1, result.ok)
    return sum(by_label.values()) * 1e3 / answered, Counter({k: v * 1e3 / answered for k, v in by_label.items()})


def cpu_per_call_local(fn: Callable[[bytes], object], bodies: Sequence[bytes]) -> float:
    """Milliseconds of this process's CPU per in-process call, sequential (its onnxruntime threads included)."""
    before = os.times()
    for _, body in zip(range(CPU_LOCAL_CALLS), itertools.cycle(bodies), strict=False):
        fn(body)
    after = os.times()
    return ((after.user + after.system) - (before.user + before.system)) * 1e3 / CPU_LOCAL_CALLS


def _point(result: LoadResult) -> dict[str, Any]:
    return {"rate": round(result.rate, 3), "achieved": round(result.achieved_rate, 3), "errors": result.errors,
            "p50_ms": round(result.quantile(50) * 1e3, 2) if result.latencies else None,
            "p95_ms": round(result.quantile(95) * 1e3, 2) if result.latencies else None,
            "p99_ms": round(result.quantile(99) * 1e3, 2) if result.latencies else None}


def note(text: str) -> dict[str, object]:
    """A row that only carries a sentence (no figures)."""
    return {"name": f"note: {text}", "ours": "-", "baseline": "-", "ratio": "-", "unit": "", "goal": ""}


# --- max-rate search, interleaved ----------------------------------------------------------------

Step = Callable[[float], Awaitable[LoadResult]]


class RateSearch:
    """load.find_max_rate's search (double from `start`, then bisect `steps` times) as a state machine, so
    several systems can be searched in lockstep: on a shared machine, drift then hits all of them alike.
    A rate whose p95 held but p99 missed is tried once more before it counts as a miss: on a shared
    machine a neighbour's burst must not end the doubling; a saturated server (p95 over too) is not retried."""

    def __init__(self, name: str, step: Step, *, start: float = 2.0, ceiling: float = 1000.0, steps: int = 3) -> None:
        self.name, self.step, self.ceiling, self.steps = name, step, ceiling, steps
        self.next: float | None = start
        self.good: float | None = None
        self.good_result: LoadResult | None = None
        self.bad: float | None = None
        self.bisected = 0
        self.missed_once: set[float] = set()
        self.trace: list[dict[str, Any]] = []

    def holds(self, result: LoadResult) -> bool:
        return result.errors == 0 and bool(result.latencies) and result.quantile(99) <= P99_BOUND

    def record(self, rate: float, result: LoadResult) -> None:
        ok = self.holds(result)
        self.trace.append({**_point(result), "holds": ok})
        tail_only = result.errors == 0 and bool(result.latencies) and result.quantile(95) <= P99_BOUND
        if not ok and tail_only and rate not in self.missed_once:
            self.missed_once.add(rate)  # only the tail missed: try once more before calling it a miss
            return
        if ok:
            self.good, self.good_result = rate, result
        else:
            self.bad = rate
        if self.good is None:
            self.next = None  # even the start rate misses
        elif self.bad is None:
            self.next = min(self.good * 2, self.ceiling) if self.good < self.ceiling else None
        elif self.bisected < self.steps:
            self.bisected += 1
            self.next = round((self.good + self.bad) / 2, 3)
        else:
            self.next = None


async def search_max_rates(searches: Sequence[RateSearch]) -> None:
    """Advance every search one open-loop step at a time, in turn, until all are done."""
    while active := [s for s in searches if s.next is not None]:
        for search in active:
            rate = search.next
            assert rate is not None
            search.record(rate, await search.step(rate))


# --- the run -------------------------------------------------------------------------------------

async def run() -> list[dict[str, object]]:
    began = time.monotonic()
    rows: list[dict[str, object]] = []
    photos = peer_setup.ensure_photos()
    bodies = [p.read_bytes() for p in photos]
    await asyncio.to_thread(peer_setup.ensure_venv)
    pipeline = peer_setup.in_process_pipeline()
    floor = peer_setup.in_process_pipeline(floor=True)
    for body in bodies:  # warm the sessions (first runs allocate) before anything is timed
        pipeline.matches(body)
        floor.matches(body)
    missing = waft_missing()
    cores = os.cpu_count() or 2
    curve: dict[str, list[dict[str, Any]]] = {"peer": [], "local": [], "waft": [], "floor": []}
    searches: list[RateSearch] = []

    async with contextlib.AsyncExitStack() as stack:
        peer = peer_setup.PeerServer()
        stack.callback(peer.stop)  # registered first: a Ctrl-C during start still stops the group
        await asyncio.to_thread(peer.start)
        _log(f"peer (BentoML) ready in {peer.started_in:.1f} s at {peer.url}")
        waft_url: str | None = None
        lattice: RunningLattice | None = None
        if not missing:
            try:
                lattice = await stack.enter_async_context(waft_lattice(bodies[0]))
                waft_url = lattice.url
            except Exception as exc:
                traceback.print_exc()
                rows.append(note(f"Waft's lattice did not come up ({type(exc).__name__}: {exc}); "
                                 "peer figures only"))
        executor = stack.enter_context(ThreadPoolExecutor(max_workers=cores, thread_name_prefix="inproc"))
        session = await stack.enter_async_context(aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)))
        local = local_caller(pipeline, bodies)
        # same work: every system must name the same best class for every photo
        expected = [pipeline.matches(body)[0]["label"] for body in bodies]
        for name, url in (("peer", peer.url), ("Waft", waft_url)):
            if url:
                got = await top1_labels(session, url, bodies)
                differ = [(p.stem, g, e) for p, g, e in zip(photos, got, expected, strict=True) if g != e]
                if differ:
                    rows.append(note(f"{name}'s top-1 differs from the in-process pipeline's (photo, {name}, "
                                     f"in-process): {differ}"))

        async def peer_step(rate: float) -> LoadResult:
            return await open_loop(peer.url, rate, STEP_S, bodies)

        async def local_step(rate: float) -> LoadResult:
            return await open_loop_local(pipeline.matches, rate, STEP_S, bodies, executor)

        # (a) concurrency 1: sequential p50, blocks interleaved with the in-process pipeline
        pair = await latency_pair(http_caller(session, peer.url, bodies), local, rounds=4, per_round=15, warmup=8)
        rows.append(row("Peer (BentoML) /matches p50, concurrency 1, vs in-process pipeline",
                        percentile(pair.ours, 50) * 1e3, percentile(pair.baseline, 50) * 1e3, "ms",
                        goal="the peer's HTTP + server overhead"))
        if waft_url:
            wpair = await latency_pair(http_caller(session, waft_url, bodies), local, rounds=4, per_round=15,
                                       warmup=8)
            rows.append(row("Waft /matches p50, concurrency 1, vs in-process pipeline",
                            percentile(wpair.ours, 50) * 1e3, percentile(wpair.baseline, 50) * 1e3, "ms",
                            goal="<= 1.3x"))

        # (b) the highest open-loop rate with p99 <= 250 ms and no errors, searched in lockstep
        _log("searching max rates (open loop, p99 <= 250 ms)")
        peer_search, local_search = RateSearch("peer", peer_step), RateSearch("local", local_step)
        searches = [peer_search, local_search]
        waft_search: RateSearch | None = None
        if waft_url:
            url = waft_url

            async def waft_step(rate: float) -> LoadResult:
                return await open_loop(url, rate, STEP_S, bodies)

            waft_search = RateSearch("waft", waft_step)
            searches.insert(0, waft_search)
        await search_max_rates(searches)
        if peer_search.good is None or peer_search.good_result is None:
            raise RuntimeError(f"the peer misses p99 <= {P99_BOUND * 1e3:g} ms even at 2 req/s")
        peer_max = peer_search.good
        local_max = local_search.good or float("nan")
        rows.append(row(f"Peer (BentoML) max rate at p99<=250ms vs in-process pipeline ({cores} threads)", peer_max,
                        local_max, "req/s", lower_is_better=False,
                        goal=f"peer p99 there {peer_search.good_result.quantile(99) * 1e3:.0f} ms"))
        waft_max: float | None = None
        if waft_search is not None:
            if waft_search.good is None or waft_search.good_result is None:
                rows.append(note(f"Waft /matches misses p99 <= {P99_BOUND * 1e3:g} ms even at 2 req/s"))
            else:
                waft_max = waft_search.good
                rows.append(row("Waft /matches max rate at p99<=250ms vs peer", waft_max, peer_max, "req/s",
                                lower_is_better=False, goal=f">= 1.3x (Waft p99 there "
                                f"{waft_search.good_result.quantile(99) * 1e3:.0f} ms)"))

        # (c) equal offered load, interleaved: half the smaller of the two max rates
        if waft_url:
            equal = round(0.5 * min(peer_max, waft_max or peer_max), 2)
            ours_runs, peer_runs = [], []
            for _ in range(2):
                ours_runs.append(await open_loop(waft_url, equal, STEP_S, bodies))
                peer_runs.append(await peer_step(equal))
            ours_lat = [x for r in ours_runs for x in r.latencies]
            peer_lat = [x for r in peer_runs for x in r.latencies]
            rows.append(row(f"Waft p50 at equal load ({equal:g} req/s) vs peer", percentile(ours_lat, 50) * 1e3,
                            percentile(peer_lat, 50) * 1e3, "ms", goal="<= 1x"))
            rows.append(row(f"Waft p99 at equal load ({equal:g} req/s) vs peer", percentile(ours_lat, 99) * 1e3,
                            percentile(peer_lat, 99) * 1e3, "ms", goal="<= 1x"))

            # (d) CPU per request near each one's own max rate (80%): what bounds that rate on few cores.
            # Not at the equal (lower) load: there onnxruntime's spinning workers, which the peer keeps,
            # burn the idle gaps between requests and would count as cost.
            assert lattice is not None and peer.process is not None
            local_ms = cpu_per_call_local(pipeline.matches, bodies)
            floor_ms = cpu_per_call_local(floor.matches, bodies)
            waft_rate, peer_rate = round(0.8 * (waft_max or peer_max), 2), round(0.8 * peer_max, 2)
            waft_ms, waft_split = await cpu_per_request(lattice.pid, waft_url, waft_rate, bodies)
            peer_ms, _ = await cpu_per_request(peer.process.pid, peer.url, peer_rate, bodies)
            split = ", ".join(f"{label} {ms:.1f}" for label, ms in waft_split.most_common() if ms >= 0.05)
            rows.append(row(f"Waft CPU per /matches request at {waft_rate:g} req/s (80% of its max), all lattice "
                            "processes, vs in-process pipeline (sequential)", waft_ms, local_ms, "ms",
                            goal=f"by process: {split}"))
            rows.append(row(f"Peer (BentoML) CPU per request at {peer_rate:g} req/s (80% of its max), all its "
                            "processes, vs in-process pipeline (sequential)", peer_ms, local_ms, "ms"))
            rows.append(row("Physical floor: in-process pipeline, sequential, 1 onnxruntime thread, no spinning, CPU "
                            "per request, vs the in-process pipeline as configured by default", floor_ms, local_ms,
                            "ms", goal="the least this work costs here"))
            rows.append(row(f"Waft CPU per /matches request at {waft_rate:g} req/s vs the physical floor", waft_ms,
                            floor_ms, "ms", goal="<= 1.3x"))
            rows.append(row("Waft CPU per /matches request vs peer's (each at 80% of its max)", waft_ms, peer_ms,
                            "ms", goal="<= 0.7x"))
        else:
            what = ", ".join(missing) if missing else "the lattice did not start"
            rows.append(note(f"Waft's /matches path is not in this build (missing: {what}); "
                             "peer and in-process figures only"))

        # latency against offered rate, for the plot: fractions of the peer's max, and of Waft's when higher
        _log("latency against offered rate")
        rates = {round(f * peer_max, 2) for f in CURVE}
        if waft_max and waft_max > peer_max:
            rates |= {round(f * waft_max, 2) for f in CURVE[2:]}
        for rate in sorted(rates):
            if rate <= 1.5 * peer_max:
                curve["peer"].append(_point(await open_loop(peer.url, rate, CURVE_STEP_S, bodies)))
            if not local_search.good or rate <= 1.5 * local_search.good:
                curve["local"].append(_point(await open_loop_local(pipeline.matches, rate, CURVE_STEP_S, bodies,
                                                                   executor)))
            if waft_url and (waft_max is None or rate <= 1.5 * waft_max):
                curve["waft"].append(_point(await open_loop(waft_url, rate, CURVE_STEP_S, bodies)))
            if not local_search.good or rate <= 1.5 * local_search.good:  # one worker per core, one thread each
                curve["floor"].append(_point(await open_loop_local(floor.matches, rate, CURVE_STEP_S, bodies,
                                                                   executor)))

    versions = peer_setup.peer_versions()
    rows.append(note(f"peer: BentoML {versions.get('bentoml', '?')} (build/peer/venv, 1 worker), started in "
                     f"{peer.started_in:.1f} s; e2e took {time.monotonic() - began:.0f} s; "
                     "plot: docs/benchmarks/latency.png"))
    _write_json(curve, searches, cores)
    _plot(curve, rows, cores)
    return rows


def _write_json(curve: dict[str, list[dict[str, Any]]], searches: Sequence[RateSearch], cores: int) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    data = {"cores": cores, "curve": curve, "searches": {s.name: {"max_rate": s.good, "steps": s.trace}
                                                         for s in searches}}
    (WORK / "e2e.json").write_text(json.dumps(data, indent=1) + "\n")


def _plot(curve: dict[str, list[dict[str, Any]]], rows: list[dict[str, object]], cores: int) -> None:
    series = [{"name": "Waft /matches (lattice)", "points": curve["waft"]},
              {"name": f"BentoML {peer_setup.peer_versions().get('bentoml', '')} peer", "points": curve["peer"]},
              {"name": f"in-process pipeline ({cores} threads, no HTTP)", "points": curve["local"]},
              {"name": f"physical floor ({cores} workers, 1 onnxruntime thread each, no HTTP)",
               "points": curve["floor"]}]
    data = {"title": "effnetlite0 /matches: latency against offered rate (4 photos, JPEG q90)",
            "bound_ms": P99_BOUND * 1e3, "series": [s for s in series if s["points"]]}
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "latency.json").write_text(json.dumps(data, indent=1) + "\n")
    try:
        peer_setup.render_plot(data, PLOT)
    except Exception as exc:
        traceback.print_exc()
        rows.append(note(f"plot not drawn ({type(exc).__name__}: {exc}); data in build/bench-e2e/latency.json"))
