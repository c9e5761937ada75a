"""Issue 17, spread placement: wadm's spreadscaler over labelled hosts, with real hosts on a real nats-server.

A spread's share of the replicas comes from wadm's `compute_spread` (the expected numbers below are the ones
wadm's own unit tests assert); within a spread the replicas go evenly over the hosts that meet its
requirements; a capability component with replicas > 1 runs one provider per eligible host, and the
app's link reaches every one of them (each answers with the link's values).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from waft_testing import built_actor, running_host

from waft.app import Manifest, Spread, compute_spread, reconcile, status, undeploy
from waft.claims import KeyPair, Role
from waft.ctl import CtlClient
from waft.lattice.codec import pack, unpack
from waft.lattice.rpc import RpcError
from waft.lattice.types import WasmCloudEntity

pytestmark = pytest.mark.timeout(180)
PROVIDER = "python:waft_testprovider"


def oam(name: str, components: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": name, "annotations": {"version": "0.1.0"}}, "spec": {"components": components}}


def scaler(replicas: int, spread: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "spreadscaler", "properties": {"replicas": replicas, **({"spread": spread} if spread else {})}}


@pytest.mark.parametrize(("replicas", "weights", "want"), [
    (7, [30, 40], [4, 3]),  # heaviest first: 7*40//70 = 4, 7*30//70 = 3
    (7, [100, 100], [4, 3]),  # the remainder to the first
    (103, [42, 3, 37, 384], [85, 10, 8, 0]),  # 84+1, 9+1, 8, 0: wadm's "complex" case
    (10, [None, None], [5, 5]),  # no weight is 100
])
def test_spread_counts_are_wadms(replicas: int, weights: list[int | None], want: list[int]) -> None:
    spreads = [{"name": f"s{i}", **({"weight": w} if w is not None else {})} for i, w in enumerate(weights)]
    manifest = Manifest.parse(oam("counts", [{"name": "echo", "type": "actor",
                                              "properties": {"image": "/x.wasm"},
                                              "traits": [scaler(replicas, spreads)]}]))
    counts = manifest.actors[0].spread_counts()
    assert [c for _, c in counts] == want
    assert sum(want) == replicas
    assert compute_spread(12, ()) == [(Spread(), 12)]


def per_host(hosts: list[Any]) -> list[int]:
    return [sum(p.count for p in h.actors.values()) for h in hosts]


async def test_weighted_spreads_go_evenly_over_their_labelled_hosts(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    async with (running_host(**config, labels={"zone": "a"}) as a1, running_host(**config, labels={"zone": "a"}) as a2,
                running_host(**config, labels={"zone": "b"}) as b):
        hosts = [a1, a2, b]
        for host in hosts:  # wasmCloud's own labels, next to the operator's
            assert {"hostcore.os", "hostcore.osfamily", "hostcore.arch", "zone"} <= set(host.labels)
        spread = [{"name": "east", "requirements": {"zone": "a"}, "weight": 75},
                  {"name": "west", "requirements": {"zone": "b"}, "weight": 25}]

        def app(replicas: int) -> Manifest:
            return Manifest.parse(oam("spread", [{"name": "echo", "type": "actor",
                                                  "properties": {"image": str(built_actor("echo"))},
                                                  "traits": [scaler(replicas, spread)]}]))

        async with CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl:
            assert await reconcile(ctl, app(8)) == ["started 6 x actor echo (spread east)",
                                                    "started 2 x actor echo (spread west)"]
            assert per_host(hosts) == [3, 3, 2]  # east's 6 evenly over both zone=a hosts
            assert await reconcile(ctl, app(8)) == []
            await reconcile(ctl, app(5))  # 5*75//100 = 3, 5*25//100 = 1, +1 to east: 4 and 1
            assert per_host(hosts) == [2, 2, 1]
            await reconcile(ctl, app(6))  # 4 and 1, +1 to east: the fifth east replica joins one of the two
            assert sorted(per_host(hosts)[:2]) == [2, 3] and per_host(hosts)[2] == 1
            await undeploy(ctl, app(6))
            assert per_host(hosts) == [0, 0, 0]


async def test_provider_replicas_run_one_per_host_and_every_one_is_linked(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    gpu = {"gpu": "yes"}
    async with (running_host(**config, labels=gpu) as g1, running_host(**config, labels=gpu) as g2,
                running_host(**config) as plain):

        def app(replicas: int) -> Manifest:
            return Manifest.parse(oam("shared", [
                {"name": "echo", "type": "actor", "properties": {"image": str(built_actor("echo"))},
                 "traits": [scaler(1), {"type": "linkdef", "properties": {"target": "tester",
                                                                          "values": {"k": "v"}}}]},
                {"name": "tester", "type": "capability", "properties": {"image": PROVIDER, "contract": "waft:test"},
                 "traits": [scaler(replicas, [{"name": "gpus", "requirements": {"gpu": "yes"}}])]}]))

        async with CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl:
            done = await reconcile(ctl, app(3))
            assert done[:2] == ["started 1 x actor echo", "started 2 x provider tester"]
            assert "2 of 3 running" in done[2] and "only 2 host(s)" in done[2]
            assert [len(h.providers.running) for h in (g1, g2, plain)] == [1, 1, 0]
            rows = {r["name"]: r for r in await status(ctl, app(2))}
            assert (rows["tester"]["desired"], rows["tester"]["running"], rows["tester"]["ok"]) == (2, 2, True)

            # Calls to the provider share its queue group; each instance answers with the link's values. A
            # provider still booting when the link was put gets it at its first health pass, so wait for
            # every instance to have answered linked once; from then on no call may find one unlinked.
            actor_id = next(iter(g1.actors or g2.actors or plain.actors))
            provider_id = next(iter(g1.providers.running.values())).public_key
            expected = {str(p.process.pid) for h in (g1, g2) for p in h.providers.running.values()}
            assert len(expected) == 2

            async def call(i: int) -> dict[str, str]:
                return unpack(await g1.rpc.invoke(WasmCloudEntity.actor(actor_id),
                                                  WasmCloudEntity.provider(provider_id, "waft:test", "default"),
                                                  "Test.LinkValues", pack(i), timeout=10))

            linked: set[str] = set()
            for i in range(400):
                if linked == expected:
                    break
                with contextlib.suppress(RpcError):
                    answer = await call(i)
                    assert answer["k"] == "v"
                    linked.add(answer["pid"])
                await asyncio.sleep(0.05)
            assert linked == expected
            pids = [(await call(i))["pid"] for i in range(40)]
            assert set(pids) == expected  # both share the load (2^-39 odds that one gets none)

            assert await reconcile(ctl, app(1)) == ["scaled provider tester down to 1"]
            assert sum(len(h.providers.running) for h in (g1, g2, plain)) == 1
            await undeploy(ctl, app(1))
            assert sum(len(h.providers.running) for h in (g1, g2, plain)) == 0


async def test_keep_going_reconciles_the_rest_of_an_app_past_a_spread_no_host_meets(nats_url, lattice_prefix):
    """What the reconciler passes: one component that cannot be placed now must not keep the others down."""
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        manifest = Manifest.parse(oam("partly", [
            {"name": "ghost", "type": "actor", "properties": {"image": str(built_actor("hostcheck"))},
             "traits": [scaler(1, [{"name": "mars", "requirements": {"zone": "mars"}}])]},
            {"name": "echo", "type": "actor", "properties": {"image": str(built_actor("echo"))},
             "traits": [scaler(2)]}]))
        async with CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl:
            done = await reconcile(ctl, manifest, keep_going=True)
            assert done == ["failed: actor ghost: no host on the lattice has the labels {'zone': 'mars'} "
                            "that spread 'mars' requires", "started 2 x actor echo"]
            assert per_host([host]) == [2]
            await undeploy(ctl, manifest)
