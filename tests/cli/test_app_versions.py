"""Issue 16: `waft app` keeps versions as `wash app` does: put, deploy NAME [VERSION], history, get, del, undeploy NAME.

A version names one manifest (a changed one under the same version is refused), deploying another
version removes what the old one had and the new one lacks, and a deployed version cannot be deleted.
The CLI runs as a subprocess against a host in the test's event loop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_wash_flags import ok, waft
from waft_testing import built_actor, running_host

from waft.claims import KeyPair, Role

pytestmark = pytest.mark.timeout(240)


def manifest(path: Path, version: str, *, replicas: int, with_provider: bool) -> Path:
    traits: list[dict[str, Any]] = [{"type": "spreadscaler", "properties": {"replicas": replicas}}]
    components: list[dict[str, Any]] = [{"name": "echo", "type": "actor",
                                         "properties": {"image": str(built_actor("echo"))}, "traits": traits}]
    if with_provider:
        traits.append({"type": "linkdef", "properties": {"target": "tester", "values": {"k": "v"}}})
        components.append({"name": "tester", "type": "capability",
                           "properties": {"image": "python:waft_testprovider", "contract": "waft:test"}})
    path.write_text(yaml.safe_dump({"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
                                    "metadata": {"name": "versioned", "annotations": {"version": version}},
                                    "spec": {"components": components}}))
    return path


async def test_versions_put_deploy_history_get_del(nats_url, lattice_prefix, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        lattice = ("--nats-url", nats_url, "-x", lattice_prefix, "-t", "20000", "-o", "json")

        async def app(*args: str) -> Any:
            return json.loads(ok(await waft("app", *args, *lattice, home=tmp_path)).stdout)

        v1 = manifest(tmp_path / "v1.yaml", "0.1.0", replicas=2, with_provider=True)
        v2 = manifest(tmp_path / "v2.yaml", "0.2.0", replicas=1, with_provider=False)
        assert (await app("put", str(v1)))["actions"] == ["version 0.1.0 stored"]
        assert (await app("put", str(v1)))["actions"] == ["version 0.1.0 unchanged"]
        changed = manifest(tmp_path / "v1-changed.yaml", "0.1.0", replicas=3, with_provider=True)
        refused = await waft("app", "put", str(changed), *lattice, home=tmp_path)
        assert refused.returncode == 1 and "already stored with a different manifest" in json.loads(
            refused.stdout)["error"], refused
        await app("put", str(v2))
        assert await app("list") == [{"name": "versioned", "latest": "0.2.0", "deployed": "", "status": "undeployed",
                                      "description": "", "source": str(v2)}]

        await app("deploy", "versioned", "0.1.0")
        assert [p.count for p in host.actors.values()] == [2]
        assert [p["image_ref"] for p in host.inventory()["providers"]] == ["python:waft_testprovider"]
        assert [(h["version"], h["deployed"]) for h in await app("history", "versioned")] == [
            ("0.1.0", True), ("0.2.0", False)]

        # the latest version: echo scaled down, the provider and the link it no longer has removed
        upgraded = await app("deploy", "versioned")
        assert upgraded["version"] == "0.2.0"
        assert "scaled actor echo down to 1" in upgraded["actions"] and "stopped provider tester" in \
            upgraded["actions"], upgraded
        assert [p.count for p in host.actors.values()] == [1]
        assert host.inventory()["providers"] == [] and host.links() == []
        assert [c["name"] for c in (await app("get", "versioned", "0.1.0"))["spec"]["components"]] == [
            "echo", "tester"]
        assert [c["name"] for c in (await app("get", "versioned"))["spec"]["components"]] == ["echo"]

        deployed = await waft("app", "del", "versioned", "0.2.0", *lattice, home=tmp_path)
        assert deployed.returncode == 1 and "is deployed" in json.loads(deployed.stdout)["error"]
        assert await app("del", "versioned", "0.1.0") == {"app": "versioned", "deleted": "0.1.0"}
        assert [h["version"] for h in await app("history", "versioned")] == ["0.2.0"]
        await app("undeploy", "versioned")
        assert host.actors == {}
        await app("delete", "versioned")  # wash's other spelling
        assert await app("list") == []
        gone = await waft("app", "get", "versioned", *lattice, home=tmp_path)
        assert gone.returncode == 1 and "no application 'versioned'" in json.loads(gone.stdout)["error"]
