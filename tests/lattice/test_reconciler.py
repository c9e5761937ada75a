"""Issue 17, the reconciler that keeps running: real hosts (`waft host` processes, SIGKILLed) on a real nats-server.

Apps are put in the apps store as deployed and the hosts' reconciler does the rest: it deploys them, puts
back a SIGKILLed host's share on the remaining eligible hosts, survives its own leader's death (another
host's candidate takes the lease), leaves hand-started instances alone, and forgets an app once
`waft app undeploy` has run. Waits are bounded polls of the lattice; the times they took are printed
(`-s`), never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from waft_testing import ROOT, built_actor, run_waft, running_host

from waft.app import APP_SPEC, Manifest
from waft.app_store import AppStore
from waft.claims import Role, keystore
from waft.ctl import CtlClient
from waft.lattice.codec import pack, unpack
from waft.lattice.types import WasmCloudEntity
from waft.reconciler import leader_of

pytestmark = pytest.mark.timeout(240)
PROVIDER = "python:waft_testprovider"
FAST = {"WAFT_RECONCILER_LEASE_MS": "3000", "WAFT_RECONCILER_INTERVAL_MS": "1000"}


def app(name: str, echo: int, *, zone: str | None = None, testers: int = 0) -> Manifest:
    where = [{"name": "zoned", "requirements": {"zone": zone}}] if zone else []
    echo_traits: list[dict[str, Any]] = [{"type": "spreadscaler", "properties": {"replicas": echo, "spread": where}}]
    components: list[dict[str, Any]] = [{"name": "echo", "type": "actor",
                                         "properties": {"image": str(built_actor("echo"))}, "traits": echo_traits}]
    if testers:
        echo_traits.append({"type": "linkdef", "properties": {"target": "tester", "values": {"k": "v"}}})
        components.append({"name": "tester", "type": "capability",
                           "properties": {"image": PROVIDER, "contract": "waft:test"},
                           "traits": [{"type": "spreadscaler", "properties": {"replicas": testers,
                                                                              "spread": where}}]})
    return Manifest.parse({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
                           "metadata": {"name": name, "annotations": {"version": "1"}},
                           "spec": {"components": components}})


async def deploy_in_store(nc: Any, prefix: str, manifest: Manifest) -> None:
    """Only stored and marked deployed: starting it is the reconciler's job."""
    store = await AppStore.open(nc, prefix)
    await store.put(manifest)
    await store.set_deployed(manifest.name, manifest.version)


async def until(what: str, check: Callable[[], Awaitable[bool]], bound: float = 60.0) -> float:
    """Seconds until `check()` held; fails after `bound` (a generous bound, not a performance claim)."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > bound:
            pytest.fail(f"not within {bound:g} s: {what}")
        await asyncio.sleep(0.2)
    took = time.monotonic() - start
    print(f"{what}: {took:.1f} s")
    return took


async def layout(ctl: CtlClient, app_name: str | None) -> dict[str, tuple[int, int]]:
    """host id -> (echo instances of the app (None: those of no app), providers of the app) on that host."""
    found = {}
    for host in await ctl.get_hosts(0.5):
        with contextlib.suppress(Exception):
            inv = await ctl.get_inventory(host["id"])
            found[host["id"]] = (
                sum(1 for a in inv["actors"] for i in a["instances"] if i["annotations"].get(APP_SPEC) == app_name),
                sum(1 for p in inv["providers"] if p["annotations"].get(APP_SPEC) == app_name))
    return found


@contextlib.asynccontextmanager
async def host_processes(nats_url: str, prefix: str, labels: list[str]) -> AsyncIterator[dict[str, Any]]:
    """`waft host` processes, one per label; yields host id -> process; every one is killed on the way out."""
    env = {**os.environ, **FAST, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "support"),
                                                                 os.environ.get("PYTHONPATH", "")])}
    processes = []
    try:
        for label in labels:
            processes.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "waft", "host", "--nats-url", nats_url, "--lattice-prefix", prefix,
                "--label", label, stdout=asyncio.subprocess.PIPE, env=env, start_new_session=True))
        ids = {}
        for process in processes:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line.startswith("host "), line
            ids[line.split()[1]] = process
        yield ids
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_a_killed_hosts_share_comes_back_and_a_new_leader_takes_over(nats_url, lattice_prefix, monkeypatch):
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    nc = await nats.connect(nats_url)
    try:
        async with (host_processes(nats_url, lattice_prefix, ["zone=a"] * 3) as zone_a,
                    running_host(nats_url=nats_url, prefix=lattice_prefix, labels={"zone": "b"}, reconciler=False,
                                 cluster_seed=keystore.load_or_create("cluster", Role.CLUSTER).seed) as b,
                    CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl):

            async def spread_as(echo: list[int], testers: list[int], on: list[str]) -> bool:
                now = await layout(ctl, "healing")
                return (sorted(now.get(h, (0, 0))[0] for h in on) == echo
                        and sorted(now.get(h, (0, 0))[1] for h in on) == testers and now.get(b.host_id) == (0, 0))

            alive = list(zone_a)
            # stored once every host is up: the reconciler does not move running replicas onto a newcomer
            await deploy_in_store(nc, lattice_prefix, app("healing", 6, zone="a", testers=2))
            await until("deployed from the store by the reconciler", lambda: spread_as([2, 2, 2], [0, 1, 1], alive))
            leader = await leader_of(nc, lattice_prefix)
            assert leader in alive  # b stands for nothing (reconciler=False): one of the processes leads
            now = await layout(ctl, "healing")
            victim = next(h for h in alive if h != leader and now[h][1] == 1)

            zone_a[victim].send_signal(signal.SIGKILL)
            alive.remove(victim)
            healed = await until("a SIGKILLed host's share restored",
                                 lambda: spread_as([3, 3], [1, 1], alive))

            zone_a[leader].send_signal(signal.SIGKILL)
            alive.remove(leader)

            async def taken_over() -> bool:
                return (await leader_of(nc, lattice_prefix)) not in (None, leader)

            await until("another host leads", taken_over)
            await until("the dead leader's share restored", lambda: spread_as([6], [1], alive))
            assert (await layout(ctl, "healing"))[b.host_id] == (0, 0)  # never on a host the spread excludes

            # the link reaches the provider that now serves: each call answers with the link's values
            echo_id = next(a["id"] for a in (await ctl.get_inventory(alive[0]))["actors"])
            provider_id = (await ctl.get_inventory(alive[0]))["providers"][0]["id"]
            answer = unpack(await b.rpc.invoke(WasmCloudEntity.actor(echo_id),
                                               WasmCloudEntity.provider(provider_id, "waft:test", "default"),
                                               "Test.LinkValues", pack(1), timeout=10))
            assert answer["k"] == "v"
            print(f"healed after SIGKILL of a non-leader in {healed:.1f} s")
    finally:
        await nc.close()


async def test_hand_started_instances_are_left_alone_and_undeploy_ends_reconciling(nats_url, lattice_prefix,
                                                                                    monkeypatch):
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    config = dict(nats_url=nats_url, prefix=lattice_prefix)
    async with (running_host(**config) as h1, running_host(**config) as h2,
                CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl):
        await deploy_in_store(ctl.nc, lattice_prefix, app("kept", 2, testers=1))
        await deploy_in_store(ctl.nc, lattice_prefix, app("dropped", 2))

        async def counts() -> tuple[int, int, int]:
            now = [await layout(ctl, name) for name in ("kept", "dropped", None)]
            return tuple(sum(e for e, _ in n.values()) for n in now)  # type: ignore[return-value]

        async def counts_are(want: tuple[int, int, int]) -> bool:
            return await counts() == want

        await until("both apps deployed by the reconciler", lambda: counts_are((2, 2, 0)))
        echo = str(built_actor("echo"))
        await ctl.start_actor(h1.host_id, echo, 1)  # by hand: no annotations
        kept = {"wasmcloud.dev/managed-by": "wadm", APP_SPEC: "kept", "wasmcloud.dev/spread_name": "default"}
        where = next(h for h in (h1, h2) if any(
            i.annotations.get(APP_SPEC) == "kept" for p in h.actors.values() for i in p.instances))
        actor_id = next(iter(where.actors))
        await ctl.stop_actor(where.host_id, actor_id, 1, kept)
        await until("the app's stopped instance restored", lambda: counts_are((2, 2, 1)))

        async def kept_providers() -> list[tuple[str, str]]:
            return [(h, p["id"]) for h in (h1.host_id, h2.host_id)
                    for p in (await ctl.get_inventory(h))["providers"] if p["annotations"].get(APP_SPEC) == "kept"]

        [(runs_on, provider_id)] = await kept_providers()
        await ctl.stop_provider(runs_on, provider_id)  # stopped, not crashed: its host will not restart it

        async def provider_back() -> bool:
            return len(await kept_providers()) == 1

        await until("the app's stopped provider restored", provider_back)

        undone = await asyncio.to_thread(  # the hosts in this loop must keep answering while the CLI works
            run_waft, "app", "undeploy", "dropped", "--nats-url", nats_url, "-x", lattice_prefix,
            home=Path(os.environ["WAFT_HOME"]))
        assert undone.returncode == 0, undone.stderr
        assert await counts() == (2, 0, 1)
        leader = await leader_of(ctl.nc, lattice_prefix)
        assert leader in (h1.host_id, h2.host_id)
        for name, says in (("kept", f"kept as declared by the reconciler on host {leader}"),
                           ("dropped", "dropped is not deployed: nothing keeps it as declared")):
            shown = await asyncio.to_thread(run_waft, "app", "status", name, "--nats-url", nats_url, "-x",
                                            lattice_prefix, home=Path(os.environ["WAFT_HOME"]))
            assert shown.returncode == 0 and says in " ".join(shown.stdout.split()), shown.stdout + shown.stderr
        # an instance carrying the undeployed app's annotations: the reconciler neither stops nor adds to it
        dropped = {**kept, APP_SPEC: "dropped"}
        await ctl.start_actor(h2.host_id, echo, 1, dropped)
        await ctl.stop_actor(where.host_id, actor_id, 1, kept)  # and a pass is due: "kept" lost one
        await until("a pass after the undeploy restored the deployed app", lambda: counts_are((2, 1, 1)))
        passes = sum(h._reconciler.passes for h in (h1, h2) if h._reconciler)
        await until("two more passes", lambda: _more_passes(h1, h2, passes + 2))
        assert await counts() == (2, 1, 1)


async def _more_passes(h1: Any, h2: Any, at_least: int) -> bool:
    return sum(h._reconciler.passes for h in (h1, h2) if h._reconciler) >= at_least


def test_component_backoff_doubles_up_to_its_bound_and_a_start_that_succeeds_clears_it():
    from waft.reconciler import ComponentBackoff

    now = [0.0]
    backoff = ComponentBackoff(1.0, 5.0, clock=lambda: now[0])
    assert not backoff.waiting("app/actor a")
    assert [backoff.failed("app/actor a") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.waiting("app/actor a") and not backoff.waiting("app/actor b")
    now[0] = 4.999
    assert backoff.waiting("app/actor a")
    now[0] = 5.0
    assert not backoff.waiting("app/actor a")
    backoff.succeeded("app/actor a")
    assert backoff.failed("app/actor a") == 1.0


async def test_a_start_that_keeps_failing_is_not_retried_every_pass(nats_url, lattice_prefix, monkeypatch):
    """An app with an actor whose start always fails (unsigned) and one that starts: passes come every 0.1 s,
    the failing start is tried once in eight passes (its backoff is an hour), and the rest is kept."""
    monkeypatch.setenv("WAFT_RECONCILER_INTERVAL_MS", "100")
    monkeypatch.setenv("WAFT_RECONCILER_BACKOFF_MS", "3600000")
    broken = ROOT / "build" / "actors" / "echo.wasm"  # no claims: every host refuses it
    manifest = Manifest.parse({"name": "half-broken", "actors": [{"name": "echo", "image": str(built_actor("echo"))},
                                                                 {"name": "unsigned", "image": str(broken)}]})
    async with (running_host(nats_url=nats_url, prefix=lattice_prefix) as host,
                CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl, ctl.events() as events):
        await deploy_in_store(ctl.nc, lattice_prefix, manifest)
        await until("the app's good actor started", lambda: _app_echoes(ctl, "half-broken", 1))
        reconciler = host._reconciler
        assert reconciler is not None
        passes = reconciler.passes
        async def eight_more() -> bool:
            return reconciler.passes >= passes + 8

        await until("eight more passes", eight_more)
        failures = []
        while not events.empty():
            event = events.get_nowait()
            if event.kind == "actor_start_failed":
                failures.append(event)
        assert len(failures) == 1, [e.error for e in failures]
        assert await _app_echoes(ctl, "half-broken", 1)


async def _app_echoes(ctl: CtlClient, app_name: str, want: int) -> bool:
    return sum(e for e, _ in (await layout(ctl, app_name)).values()) == want
