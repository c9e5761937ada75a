"""Issue 16: wadm's OAM manifests against real hosts, and the annotations that keep apps off what they did not start.

A wadm manifest becomes the same model as Waft's own; what an app starts carries wadm's annotations
(`wasmcloud.dev/managed-by`, `wasmcloud.dev/appspec`), and reconcile, status and undeploy count and stop
only those, so an actor or provider started by hand keeps running; spreadscaler spreads place
replicas by host label and weight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from waft_testing import ROOT, built_actor, running_host

from waft.app import APP_SPEC, MANAGED_BY, SPREAD_NAME, Manifest, ManifestError, reconcile, status, undeploy
from waft.claims import KeyPair, Role
from waft.ctl import CtlClient, CtlError, wait_for_event

pytestmark = pytest.mark.timeout(180)
PROVIDER = "python:waft_testprovider"


def oam(name: str, components: list[dict[str, Any]], version: str = "0.1.0") -> dict[str, Any]:
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": name, "annotations": {"version": version}}, "spec": {"components": components}}


def echo_component(replicas: int, *, spread: list[dict[str, Any]] | None = None,
                   link: bool = False) -> dict[str, Any]:
    traits: list[dict[str, Any]] = [{"type": "spreadscaler",
                                     "properties": {"replicas": replicas, **({"spread": spread} if spread else {})}}]
    if link:
        traits.append({"type": "linkdef", "properties": {"target": "tester", "values": {"k": "v"}}})
    return {"name": "echo", "type": "actor", "properties": {"image": str(built_actor("echo"))}, "traits": traits}


TESTER = {"name": "tester", "type": "capability", "properties": {"image": PROVIDER, "contract": "waft:test"}}


def test_the_wadm_ml_manifest_is_the_waft_one() -> None:
    """deploy/ml-app.wadm.yaml and deploy/ml-app.yaml become one model (only the wadm one has a description)."""
    ours = Manifest.load(ROOT / "deploy" / "ml-app.yaml")
    wadm = Manifest.load(ROOT / "deploy" / "ml-app.wadm.yaml")
    assert (wadm.name, wadm.version, wadm.actors, wadm.providers, wadm.links) == (
        ours.name, ours.version, ours.actors, ours.providers, ours.links)
    assert [a.count for a in wadm.actors] == [2, 2, 1]
    assert {p.name: p.contract for p in wadm.providers} == {"httpserver": "wasmcloud:httpserver",
                                                             "mlinference": "wasmcloud:mlinference"}
    # the stored form (wadm's) parses back to the same model
    again = Manifest.parse(ours.to_oam())
    assert (again.actors, again.providers, again.links) == (ours.actors, ours.providers, ours.links)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(apiVersion="core.oam.dev/v1alpha1"), "apiVersion must be core.oam.dev/v1beta1"),
    (lambda d: d.update(kind="Deployment"), "kind must be Application"),
    (lambda d: d["spec"]["components"][0]["traits"].append({"type": "daemonscaler", "properties": {}}),
     "trait type 'daemonscaler' is not supported"),
    (lambda d: d["spec"]["components"][0].update(type="component"), "type must be actor or capability"),
    (lambda d: d["spec"]["components"][1]["properties"].pop("contract"), "needs a non-empty 'contract'"),
    (lambda d: d["spec"]["components"].pop(1), "targets 'tester', which is not a capability component"),
    (lambda d: d["metadata"].update(name="no spaces"), "application name 'no spaces'"),
])
def test_wadm_manifests_are_refused_with_the_reason(edit, message) -> None:  # type: ignore[no-untyped-def]
    data = oam("refused", [echo_component(1, link=True), dict(TESTER, properties=dict(TESTER["properties"]))])
    Manifest.parse(data)  # the unedited manifest is fine
    edit(data)
    with pytest.raises(ManifestError, match=message):
        Manifest.parse(data)


def annotations_of(inventory: dict[str, Any]) -> list[dict[str, str]]:
    return sorted((i["annotations"] for a in inventory["actors"] for i in a["instances"]), key=len)


async def test_undeploy_leaves_what_was_started_by_hand(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        async with CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl:
            echo = str(built_actor("echo"))
            async with ctl.events() as events:  # an echo instance and the provider, started by hand
                await ctl.start_actor(host.host_id, echo, 1)
                actor_id = (await wait_for_event(events, "actor_started", image_ref=echo)).public_key
                await ctl.start_provider(host.host_id, PROVIDER)
                await wait_for_event(events, "provider_started", image_ref=PROVIDER)
            app = Manifest.parse(oam("handsoff", [echo_component(2, link=True), TESTER]))
            done = await reconcile(ctl, app)
            assert done == ["started 2 x actor echo", "linked echo -> tester (waft:test)"]  # the provider is reused
            owned = {MANAGED_BY: "wadm", APP_SPEC: "handsoff", SPREAD_NAME: "default"}
            assert annotations_of(await ctl.get_inventory(host.host_id)) == [{}, owned, owned]
            assert [(r["name"], r["running"]) for r in await status(ctl, app)] == [("echo", 2), ("tester", 1)]
            assert await reconcile(ctl, app) == []  # the hand-started instance is not the app's third

            done = await undeploy(ctl, app)
            assert done == ["kept link echo (waft:test): instances the app did not start use it",
                            f"stopped 2 x actor echo on {host.host_id[:8]}"]
            inventory = await ctl.get_inventory(host.host_id)
            assert [(a["id"], a["instances"][0]["annotations"]) for a in inventory["actors"]] == [(actor_id, {})]
            assert [p["image_ref"] for p in inventory["providers"]] == [PROVIDER]  # not the app's to stop
            assert [ln["actor_id"] for ln in await ctl.get_links()] == [actor_id]

            # what the app did start, it stops: a provider it started, and the link once no one else needs it
            async with ctl.events() as events:
                await ctl.stop_actor(host.host_id, actor_id, 1)
                await wait_for_event(events, "actor_stopped", public_key=actor_id)
                provider_id = inventory["providers"][0]["id"]
                await ctl.stop_provider(host.host_id, provider_id)
                await wait_for_event(events, "provider_stopped", public_key=provider_id)
            assert "started provider tester" in await reconcile(ctl, app)
            assert sorted(await undeploy(ctl, app)) == [f"stopped 2 x actor echo on {host.host_id[:8]}",
                                                        "stopped provider tester", "unlinked echo (waft:test)"]
            inventory = await ctl.get_inventory(host.host_id)
            assert inventory["actors"] == [] and inventory["providers"] == []
            assert await ctl.get_links() == []


async def test_spreads_place_replicas_by_label_and_weight(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    async with running_host(**config, labels={"zone": "a"}) as a, running_host(**config, labels={"zone": "b"}) as b:
        async with CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl:
            spread = [{"name": "east", "requirements": {"zone": "a"}, "weight": 75},
                      {"name": "west", "requirements": {"zone": "b"}, "weight": 25}]
            done = await reconcile(ctl, Manifest.parse(oam("spread", [echo_component(4, spread=spread)])),
                                   host_id=b.host_id)  # named host, but only where the spread allows
            assert done == ["started 3 x actor echo (spread east)", "started 1 x actor echo (spread west)"]
            assert sum(p.count for p in a.actors.values()) == 3 and sum(p.count for p in b.actors.values()) == 1
            done = await reconcile(ctl, Manifest.parse(oam("spread", [echo_component(2, spread=spread)])))
            # 2 x 75/100 -> 1 and 2 x 25/100 -> 0, the rest to the first spread: 2 and 0
            assert done == ["scaled actor echo (spread east) down to 2", "scaled actor echo (spread west) down to 0"]
            assert sum(p.count for p in a.actors.values()) == 2 and sum(p.count for p in b.actors.values()) == 0

            nowhere = [{"name": "mars", "requirements": {"zone": "mars"}}]
            with pytest.raises(CtlError, match=r"no host on the lattice has the labels \{'zone': 'mars'\}"):
                await reconcile(ctl, Manifest.parse(oam("nowhere", [echo_component(1, spread=nowhere)])))
            await undeploy(ctl, Manifest.parse(oam("spread", [echo_component(0)])))
            assert not a.actors and not b.actors


def test_relative_and_file_refs_resolve_against_the_manifest(tmp_path: Path) -> None:
    data = oam("refs", [{"name": "a", "type": "actor", "properties": {"image": "file://actors/a.wasm"}},
                        {"name": "b", "type": "actor", "properties": {"image": "b.wasm"}},
                        {"name": "c", "type": "actor", "properties": {"image": "file:///abs/c.wasm"}},
                        {"name": "d", "type": "actor", "properties": {"image": "127.0.0.1:5000/waft/d:0.1.0"}}])
    parsed = Manifest.parse(data, base=tmp_path)
    assert [a.image for a in parsed.actors] == [str(tmp_path / "actors/a.wasm"), str(tmp_path / "b.wasm"),
                                                "/abs/c.wasm", "127.0.0.1:5000/waft/d:0.1.0"]
