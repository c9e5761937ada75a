"""`make chaos` (cluster half): faults of a three-member NATS cluster under steady load.

Three nats-servers in one cluster, each on its own loopback address (127.0.0.2, .3, .4: three machines on
one box), each with its own Waft host: host A (`waft up --nats-url`, given every member, with the
providers and the ML app), hosts B and C (`waft host` on their own member only, each with a copy of the
three actors). The lattice state (lattice cache, apps store, chunk store) has three replicas. Faults, one
at a time under an open-loop load through host A's httpserver: SIGKILL a NATS member (C's), SIGKILL the
member host A is using (A fails over to another), SIGSTOP a member for 10 s (a partition: its routes
and clients stop answering), and a fourth member with a fourth host joining. For each: every request
ends, no wrong answer, how long errors last, and whether the lattice cache and apps store still hold every
entry they held before. Results go to docs/reliability.md (the cluster table) and the short versions run
in `make test` (tests/cluster/).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS

from tools.chaos import (
    ScenarioResult,
    Workload,
    _stop,
    free_port,
    load_with_fault,
    ml_workload,
    spawn_logged,
    until_terminated,
)
from tools.paths import ROOT
from waft.app import Manifest
from waft.claims.keys import KeyPair, Role
from waft.embedded_nats import ClusterOptions, EmbeddedNats
from waft.lattice import subjects
from waft.lattice.credentials import HOST_KEY, PROVIDER_KEY, LatticeCredentials, authorization_config, route_credentials

PREFIX = "default"


def member_address(index: int) -> str:
    """127.0.0.{2+index}: a machine of its own as far as sockets go (Linux routes all of 127/8 to lo)."""
    return f"127.0.0.{2 + index}"


def free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def write_credentials(home: Path) -> LatticeCredentials:
    """The two lattice users, as `waft up` would keep them in `home`'s key store (0600 seed files), so the
    hosts and CLI started with WAFT_HOME=home find them without a flag."""
    keys = home / "keys"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds = LatticeCredentials(KeyPair.generate(Role.USER), KeyPair.generate(Role.USER))
    for name, pair in ((HOST_KEY, creds.host), (PROVIDER_KEY, creds.provider)):
        fd = os.open(keys / f"{name}.nk", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(pair.seed + "\n")
    return creds


@dataclass
class Member:
    index: int
    server: EmbeddedNats
    cluster_port: int

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid


@dataclass
class NatsCluster:
    """Members of one nats-server cluster, secured as `waft up` secures one: nkey client users with the
    lattice permissions, and routes that present the password derived from the host key."""

    home: Path
    size: int = 3
    name: str = "waft"
    members: list[Member] = field(default_factory=list)
    credentials: LatticeCredentials | None = None

    def _member(self, index: int, routes: tuple[str, ...], cluster_port: int | None = None) -> Member:
        assert self.credentials is not None
        address = member_address(index)
        port = cluster_port or free_port_on(address)
        options = ClusterOptions(self.name, f"{address}:{port}", routes, route_credentials(self.credentials))
        server = EmbeddedNats(self.home / f"nats-{index}", host=address, server_name=f"n{index}", cluster=options,
                              authorization=authorization_config(self.credentials, [PREFIX]), monitor_port=-1)
        return Member(index, server, port)

    def routes(self) -> tuple[str, ...]:
        return tuple(f"nats-route://{member_address(m.index)}:{m.cluster_port}" for m in self.members)

    def start(self) -> None:
        self.credentials = self.credentials or write_credentials(self.home)
        ports = [free_port_on(member_address(i)) for i in range(self.size)]
        routes = tuple(f"nats-route://{member_address(i)}:{p}" for i, p in enumerate(ports))
        for i, port in enumerate(ports):
            member = self._member(i, routes, port)
            self.members.append(member)
            member.server.start()

    def add_member(self) -> Member:
        """One more member, routed to every current one (they learn of it through the cluster's gossip)."""
        index = len(self.members)
        port = free_port_on(member_address(index))
        member = self._member(index, (*self.routes(), f"nats-route://{member_address(index)}:{port}"), port)
        self.members.append(member)
        member.server.start()
        return member

    def stop(self) -> None:
        for member in self.members:
            if member.server.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    member.server.process.send_signal(signal.SIGCONT)
            member.server.stop()

    def kill(self, index: int) -> None:
        """SIGKILL: the member's process is gone at once, no goodbye to its routes or clients."""
        process = self.members[index].server.process
        assert process is not None
        process.kill()
        process.wait()

    def restart(self, index: int) -> None:
        """Start a killed member again on the same addresses and store (it catches up from its peers)."""
        member = self.members[index]
        server = member.server
        port = int(server.public_url.rsplit(":", 1)[1])
        server.process = None
        server.port = port
        server.start()

    def serving(self, connection_name: str) -> int:
        """The member a client named `connection_name` is connected to now (their /connz)."""
        for member in self.members:
            if member.server.process is None or member.server.process.poll() is not None:
                continue
            with urllib.request.urlopen(f"{member.server.monitor_url}/connz?limit=1024", timeout=5) as response:
                if any(c.get("name") == connection_name for c in json.loads(response.read()).get("connections") or []):
                    return member.index
        raise LookupError(f"no member serves a client named {connection_name!r}")

    @property
    def url(self) -> str:
        """Every member, comma-separated: what a client that may use any of them is given."""
        return ",".join(m.server.public_url for m in self.members)

    def routes_of(self, index: int) -> int:
        """How many other members member `index` has routes to now (its /routez; nats-server keeps a pool
        of several route connections per peer, so peers are counted by name)."""
        with urllib.request.urlopen(f"{self.members[index].server.monitor_url}/routez", timeout=5) as response:
            routes = json.loads(response.read()).get("routes") or []
        return len({r.get("remote_name") or r.get("remote_id") for r in routes})

    async def connect(self, index: int | None = None) -> NATS:
        assert self.credentials is not None
        servers = [self.members[index].server.public_url] if index is not None else self.url.split(",")
        # pings every second: a client of a frozen member notices within ~3 s and moves to another
        return await nats.connect(servers, nkeys_seed_str=self.credentials.host.seed, connect_timeout=5,
                                  max_reconnect_attempts=-1, reconnect_time_wait=0.25, ping_interval=1,
                                  max_outstanding_pings=2)

    async def wait_jetstream(self, timeout_s: float = 60) -> None:
        from waft.lattice.replication import wait_jetstream

        nc = await self.connect()
        try:
            await wait_jetstream(nc, timeout_s)
        finally:
            await nc.close()

    @contextlib.contextmanager
    def running(self) -> Any:
        try:
            self.start()
            yield self
        finally:
            self.stop()


# ------------------------------------------------------------------------------------ lattice state

def dead_hosts_presence(subject: str, live_hosts: set[str]) -> bool:
    """A `running` presence entry (`lc.{prefix}.running.{public key}.{host id}`) of a host that is no longer
    up: the stale-claims sweep is meant to remove it some heartbeats after the host died, so it going is
    not a loss (a SIGKILLed host's entries go during whichever later fault the sweep falls in)."""
    parts = subject.split(".")
    return len(parts) == 5 and parts[0] == "lc" and parts[2] == "running" and parts[4] not in live_hosts


async def answered(call: Callable[[], Awaitable[Any]], attempts: int = 12) -> Any:
    """`call()` once JetStream answers: right after a member dies the meta or stream leader may be on it, and
    an API request times out until the survivors elect another. What the checks measure is whether the
    state is still there, not how fast the API comes back (`make chaos` times that), so a read that timed
    out is asked again, a bounded number of times, and the last failure is raised."""
    for attempt in range(attempts):
        try:
            return await call()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError,
                nats.errors.ConnectionReconnectingError, TimeoutError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def lattice_state(nc: NATS, expected: dict[str, str] | None = None) -> dict[str, str]:
    """Every entry of the lattice cache (last message per subject) and of the apps store, as subject -> data:
    what "the lattice lost nothing" compares before and after a fault. Each app held in `expected` is read
    by its key as well as listed: a listing is a consumer that can come back short while the cluster is
    busy, a read by key says whether the entry is there."""
    js = nc.jetstream()
    state: dict[str, str] = {}
    stream = subjects.lattice_cache_stream(PREFIX)
    info = await answered(lambda: js.stream_info(stream))
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            msg = await answered(lambda seq=seq: js.get_msg(stream, seq))
            state[msg.subject] = (msg.data or b"").decode()
    from waft.app_store import bucket_name

    with contextlib.suppress(nats.js.errors.BucketNotFoundError):
        kv = await answered(lambda: js.key_value(bucket_name(PREFIX)))
        keys: set[str] = {k.removeprefix("apps/") for k in expected or {} if k.startswith("apps/")}
        with contextlib.suppress(nats.js.errors.NoKeysError):
            keys |= set(await answered(kv.keys))
        for key in sorted(keys):
            try:
                entry = await answered(lambda key=key: kv.get(key))
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue  # not there: lost, if it was before
            state[f"apps/{key}"] = (entry.value or b"").decode()
    return state


async def replicas_of(nc: NATS) -> dict[str, int]:
    """Each lattice stream's replica count, by stream name."""
    found = {}
    for name in await answered(nc.jetstream().streams_info):
        if name.config.name and re.match(r"(LATTICECACHE_|KV_waft_apps_|OBJ_)", name.config.name):
            found[name.config.name] = name.config.num_replicas or 1
    return found


# ------------------------------------------------------------------------------------ the lattice

def built_issuers() -> list[str]:
    """Who signed the actors in build/actors: the hosts of this fresh home trust them (and no one else)."""
    from waft.claims import inspect_actor

    return sorted({inspect_actor(path.read_bytes()).issuer for path in (ROOT / "build" / "actors").glob("*_s.wasm")})


class ClusterLattice:
    """The cluster, a bindle server, and one host per member, each process ours to kill."""

    def __init__(self, workload: Workload, home: Path) -> None:
        self.workload = workload
        self.home = home
        self.env = {"WAFT_MODELS_DIR": str(ROOT / "build" / "models"), **os.environ, "WAFT_HOME": str(home),
                    "WAFT_TRUSTED_ISSUERS": ",".join(built_issuers())}
        self.cluster = NatsCluster(home)
        self.bindle: asyncio.subprocess.Process | None = None
        self.hosts: list[asyncio.subprocess.Process] = []
        self.http_port = free_port()
        self.bindle_port = free_port()
        self.killed: int | None = None  # the member the last "host A's member" fault killed
        self.app = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}{self.workload.path}"

    async def _spawn(self, name: str, *args: str) -> asyncio.subprocess.Process:
        return await spawn_logged(self.home, self.env, name, *args)

    async def ctl(self, *args: str, url: str | None = None) -> str:
        return await self.waft("ctl", *args, url=url)

    async def waft(self, group: str, *args: str, url: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "waft", group, *args, "--nats-url",
                                                    url or self.cluster.url, env=self.env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode:
            raise RuntimeError(f"waft {group} {' '.join(args)}: {err.decode().strip()}")
        return out.decode()

    async def host_ids(self) -> dict[str, str]:
        """label role -> host id, for every host that answers a ping."""
        out = await self.ctl("get", "hosts", "-o", "json")
        return {h.get("labels", {}).get("role", "a"): h["id"] for h in json.loads(out or "[]")}

    async def start_member_host(self, index: int) -> asyncio.subprocess.Process:
        """`waft host` on member `index` only (its machine's own NATS), with a copy of the actors."""
        role = "abcdefgh"[index]
        host = await self._spawn(f"host-{role}", "-m", "waft", "host", "--nats-url",
                                 self.cluster.members[index].server.public_url, "--label", f"role={role}")
        if index < len(self.hosts):  # a host started again in its place
            self.hosts[index] = host
        else:
            self.hosts.append(host)
        for _ in range(150):
            ids = await self.host_ids()
            if role in ids:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"host {role} never answered a ping")
        for actor in self.workload.extra_actors_on_b:
            await self.ctl("start", "actor", actor, "--host-id", ids[role])
        return host

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ClusterLattice]:
        from tools.chaos import ChaosLattice

        probe = ChaosLattice(self.workload, self.home)  # its HTTP helpers, pointed at our ports
        probe.http_port, probe.bindle_port = self.http_port, self.bindle_port
        await asyncio.to_thread(self.cluster.start)
        try:
            await self.cluster.wait_jetstream()
            self.bindle = await self._spawn("bindle", "-m", "waft.bindle", "--address",
                                            f"127.0.0.1:{self.bindle_port}", "--directory", str(self.home / "bindle"))
            await probe._wait_http(f"http://127.0.0.1:{self.bindle_port}/healthz")
            push = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "waft", "models", "push", "--bindle-url",
                f"http://127.0.0.1:{self.bindle_port}/v1", env=self.env, stdout=asyncio.subprocess.DEVNULL)
            await asyncio.wait_for(push.wait(), 120)
            self.env["BINDLE_URL"] = f"http://127.0.0.1:{self.bindle_port}/v1/"
            manifest = self.home / "app.yaml"
            manifest.write_text(self.workload.manifest.read_text().replace("127.0.0.1:8078",
                                                                           f"127.0.0.1:{self.http_port}")
                                .replace("../build/", f"{ROOT}/build/"))
            # host A may use any member: its NATS connection (and its providers') fail over
            self.hosts.append(await self._spawn("host-a", "-m", "waft", "--verbose", "up", "--nats-url",
                                                self.cluster.url, "--no-bindle", "--no-dashboard", "--app",
                                                str(manifest)))
            await probe._wait_until_correct(180)
            # stored and deployed through the apps store: the reconciler keeps it at its counts from here
            await self.waft("app", "deploy", str(manifest), "--host-id", (await self.host_ids())["a"])
            self.app = Manifest.load(manifest).name
            for index in range(1, len(self.cluster.members)):
                await self.start_member_host(index)
            await probe._wait_until_correct()
            yield self
        finally:
            for proc in reversed(self.hosts):
                await _stop(proc)
            await _stop(self.bindle)
            await asyncio.to_thread(self.cluster.stop)

    async def declared_counts_met(self) -> bool:
        """`waft app status`: every component of the app runs its declared count (only what it started)."""
        try:
            rows = json.loads(await self.waft("app", "status", self.app, "-o", "json") or "[]")
        except (RuntimeError, TimeoutError, ValueError):
            return False
        rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
        return bool(rows) and all(row.get("ok") for row in rows)

    async def restored_after(self, bound_s: float = 60.0) -> float | None:
        """Seconds until the declared counts are met again (None: not within `bound_s`, a failure)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while loop.time() - started < bound_s:
            if await self.declared_counts_met():
                return round(loop.time() - started, 2)
            await asyncio.sleep(0.5)
        return None

    async def wait_until_correct(self, timeout: float = 120) -> None:
        from tools.chaos import ChaosLattice

        probe = ChaosLattice(self.workload, self.home)
        probe.http_port = self.http_port
        await probe._wait_until_correct(timeout)


# ------------------------------------------------------------------------------------ scenarios

@dataclass
class ClusterResult:
    scenario: ScenarioResult
    state_before: int
    lost: list[str]  # lattice entries held before the fault and missing (or changed) after it
    replicas: dict[str, int]
    written_during: bool  # an apps-store write made while the fault lasted is there afterwards
    restored_s: float | None = None  # after the repair, until `waft app status` shows the declared counts

    def row(self) -> dict[str, object]:
        return {**self.scenario.row(), "lattice_entries": self.state_before, "lost": self.lost[:5],
                "replicas": self.replicas, "write_during_fault_kept": self.written_during,
                "counts_met_after_s": self.restored_s}


async def _put_marker(nc: NATS, name: str) -> bool:
    """`waft app put` of a small app while a fault lasts (quorum is 2 of 3: it must succeed); never deployed."""
    from waft.app import Manifest
    from waft.app_store import AppStore

    manifest = Manifest.parse({"name": f"chaos-{name}", "version": "0.0.1", "actors": [], "providers": [],
                               "links": []})
    for _ in range(20):  # the observer may itself be reconnecting to another member
        try:
            await (await AppStore.open(nc, PREFIX)).put(manifest)
            return True
        except (nats.errors.Error, TimeoutError):
            await asyncio.sleep(0.5)
    return False


def _marker(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def cluster_scenarios(lattice: ClusterLattice, *, stop_s: float) -> dict[str, Callable[[], Awaitable[None]]]:
    cluster = lattice.cluster

    async def kill_member_c() -> None:
        await asyncio.to_thread(cluster.kill, 2)

    async def kill_member_of_a() -> None:
        host_a = (await lattice.host_ids())["a"]
        lattice.killed = await asyncio.to_thread(cluster.serving, f"waft host {host_a[:8]}")
        await asyncio.to_thread(cluster.kill, lattice.killed)

    async def kill_host_c() -> None:
        lattice.hosts[2].kill()
        await lattice.hosts[2].wait()

    async def freeze_member_b() -> None:
        pid = cluster.members[1].pid
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(stop_s)
        os.kill(pid, signal.SIGCONT)

    async def add_fourth() -> None:
        await asyncio.to_thread(cluster.add_member)
        await lattice.start_member_host(len(cluster.members) - 1)

    return {"SIGKILL NATS member C": kill_member_c, "SIGKILL the NATS member host A uses": kill_member_of_a,
            "SIGKILL host C": kill_host_c,
            f"SIGSTOP NATS member B for {stop_s:g} s": freeze_member_b, "add a fourth member and host": add_fourth}


async def cluster_repair(lattice: ClusterLattice, name: str) -> None:
    if name.startswith("SIGKILL NATS member C"):
        await asyncio.to_thread(lattice.cluster.restart, 2)
    if name.startswith("SIGKILL host C"):
        await lattice.start_member_host(2)
    if name.startswith("SIGKILL the NATS member host A uses") and lattice.killed is not None:
        await asyncio.to_thread(lattice.cluster.restart, lattice.killed)
    await lattice.cluster.wait_jetstream()
    await lattice.wait_until_correct()


async def run_cluster_scenarios(workload: Workload, *, rate: float | None, duration: float, fault_at: float,
                                only: tuple[str, ...] = (), stop_s: float = 10.0,
                                check: Callable[[ClusterLattice, str], Awaitable[None]] | None = None
                                ) -> list[ClusterResult]:
    """Each cluster fault in turn under `rate` req/s; `check(lattice, name)` runs after each repair (the
    tests use it to look at the cluster while it is still up)."""
    with tempfile.TemporaryDirectory(prefix="waft-chaos-cluster-") as tmp:
        lattice = ClusterLattice(workload, Path(tmp))
        results: list[ClusterResult] = []
        try:
            async with lattice.running():
                if rate is None:
                    from tools.chaos import measured_rate

                    rate = await measured_rate(lattice)  # type: ignore[arg-type]
                    print(f"chaos-cluster: load at {rate:g} req/s (70% of the measured maximum)", file=sys.stderr,
                          flush=True)
                observer = await lattice.cluster.connect()
                try:
                    for name, fault in cluster_scenarios(lattice, stop_s=stop_s).items():
                        if only and not any(name.startswith(o) for o in only):
                            continue
                        print(f"chaos-cluster: {name} …", file=sys.stderr, flush=True)
                        before = await lattice_state(observer)
                        written: list[bool] = []

                        async def fault_then_write(fault: Callable[[], Awaitable[None]] = fault,
                                                   name: str = name, written: list[bool] = written) -> None:
                            await fault()
                            written.append(await _put_marker(observer, _marker(name)))

                        scenario = await load_with_fault(lattice, name, rate, duration, fault_at,  # type: ignore[arg-type]
                                                         fault_then_write)
                        after = await lattice_state(observer, before)
                        live = set((await lattice.host_ids()).values())
                        lost = sorted(k for k, v in before.items()
                                      if after.get(k) != v and not dead_hosts_presence(k, live))
                        marker = f"apps/chaos-{_marker(name)}"
                        after = {**after, **{k: v for k, v in (await lattice_state(observer, {marker: ""})).items()
                                              if k == marker}}
                        kept = bool(written and written[0] and after.get(marker))
                        result = ClusterResult(scenario, len(before), lost, await replicas_of(observer), kept)
                        results.append(result)
                        print(f"chaos-cluster: {json.dumps(result.row())}", file=sys.stderr, flush=True)
                        await cluster_repair(lattice, name)
                        result.restored_s = await lattice.restored_after()
                        print(f"chaos-cluster: declared counts met {result.restored_s} s after the repair",
                              file=sys.stderr, flush=True)
                        if check is not None:
                            await check(lattice, name)
                finally:
                    await observer.close()
        except BaseException:
            import shutil

            keep = ROOT / "build" / "chaos-cluster-logs"
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(tmp, keep, ignore=shutil.ignore_patterns("jetstream", "bindle", "cache", "keys"),
                            dirs_exist_ok=True)
            print(f"chaos-cluster: logs kept in {keep}", file=sys.stderr)
            raise
        return results


REPORT_HEADING = "## NATS cluster faults"


def write_report(results: list[ClusterResult], rate: float, duration: float) -> Path:
    """The cluster table, under its own heading in docs/reliability.md (replacing an older one)."""
    out = ROOT / "docs" / "reliability.md"
    out.write_text(render_report(results, rate, duration, out.read_text() if out.exists() else "# Reliability\n"))
    return out


def render_report(results: list[ClusterResult], rate: float, duration: float, earlier: str) -> str:
    """`earlier` with its cluster section's introduction and table replaced by this run's. What people wrote
    by hand is kept: the rest of the file, and the notes under the old table (every line after it up to the
    next `## ` section), which say what a run's numbers mean and are written after it."""
    heading = REPORT_HEADING
    lines = [heading, "", f"Written by `make chaos` (`tools/chaos_cluster.py`): three nats-servers in one cluster on "
             "127.0.0.2-4, each with its own host; each fault 5 s into a steady open-loop load of "
             f"{rate:g} req/s (70% of the maximum measured first, unless WAFT_CHAOS_RATE) for {duration:g} s "
             "against `/effnetlite0/matches` on host A (which is given every "
             "member; hosts B and C only their own). Lost: lattice-cache and apps-store entries held before "
             "the fault and missing or changed after it; an app is put into the apps store during each fault. "
             "Counts met: seconds after the repair until `waft app status` shows the app's declared counts "
             "(kept by the reconciler).",
             "", "| fault | requests | ok | errors | wrong answers | unfinished | errors stop after (s) | "
             "lattice entries lost | write during fault kept | replicas after | counts met after repair (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        row = r.scenario.row()
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(row["errors"].items())) or "none"  # type: ignore[union-attr]
        replicas = ", ".join(f"{k} {v}" for k, v in sorted(r.replicas.items()))
        lines.append(f"| {r.scenario.name} | {row['requests']} | {row['ok']} | {errors} | {row['wrong_answers']} | "
                     f"{row['unfinished']} | {row['recovery_s']} | {len(r.lost)} of {r.state_before} | "
                     f"{'yes' if r.written_during else 'no'} | {replicas} | "
                     f"{'never' if r.restored_s is None else r.restored_s} |")
    lines.append("")
    before, found, old_section = earlier.partition(heading)
    kept = ""
    if found:
        old_lines = old_section.split("\n")
        table = next((i for i, line in enumerate(old_lines) if line.startswith("|")), len(old_lines))
        end_of_table = next((i for i in range(table, len(old_lines)) if not old_lines[i].startswith("|")),
                            len(old_lines))
        kept = "\n".join(old_lines[end_of_table:]).strip("\n")
    return before.rstrip() + "\n\n" + "\n".join(lines) + (f"\n{kept}\n" if kept else "")


def main() -> int:
    rate = float(os.environ["WAFT_CHAOS_RATE"]) if os.environ.get("WAFT_CHAOS_RATE") else None
    duration = float(os.environ.get("WAFT_CHAOS_DURATION", "30"))
    started = time.monotonic()
    try:
        results = asyncio.run(until_terminated(run_cluster_scenarios(ml_workload(), rate=rate, duration=duration,
                                                                      fault_at=5.0)))
    except asyncio.CancelledError:
        print("chaos-cluster: stopped (SIGTERM); everything it started is stopped", file=sys.stderr)
        return 143
    for r in results:
        print(json.dumps(r.row()))
    measured = len(results[0].scenario.requests) / duration if results else 0.0
    print(f"wrote {write_report(results, measured, duration)} in {time.monotonic() - started:.0f} s")
    return 0 if all(r.scenario.wrong == 0 and r.scenario.unfinished == 0 and not r.lost and r.restored_s is not None
                    for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
