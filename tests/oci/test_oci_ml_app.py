"""Issue 7: the ML application started entirely from an OCI registry.

The three ML actors and both provider archives (made by `waft par create`) are pushed with `waft reg
push` to a real docker-registry; a manifest like deploy/ml-app.yaml names them by OCI ref; a fresh host
(allowed-insecure for that registry) reconciles it, and chelsea's JPEG PUT to /effnetlite0/matches comes
back with a cat class on top.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from waft_testing import ROOT, built_actor, run_waft

from waft.app import Manifest, read_state, reconcile, status, undeploy
from waft.claims import KeyPair, Role, trust
from waft.ctl import CtlClient
from waft.oci import par as parlib

TESTS = ROOT / "tests"
for folder in ("mlinference", "httpserver"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

pytestmark = pytest.mark.timeout(300)
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
PROVIDERS = {"httpserver": ("wasmcloud:httpserver", "HTTP Server", "waft_httpserver"),
             "mlinference": ("wasmcloud:mlinference", "ML Inference", "waft_mlinference")}


def chelsea_jpeg() -> bytes:
    """scikit-image's bundled cat photo (no download), as the JPEG a user would send."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=92)
    return buf.getvalue()


async def wait_model_ready(session: aiohttp.ClientSession, url: str, model: str, *, attempts: int = 1200) -> None:
    """Poll the KServe model-ready route until the link has arrived and the model loaded (bounded polls)."""
    last = None
    for _ in range(attempts):
        async with session.get(f"{url}/v2/models/{model}/ready") as response:
            last = (response.status, await response.text())
            if response.status == 200:
                return
            assert response.status in (404, 503), last  # link not there yet / still loading
        await asyncio.sleep(0.1)
    raise AssertionError(f"model {model} never became ready: {last}")


def push_all(registry, work: Path) -> dict[str, str]:
    """`waft par create` both providers, `waft reg push` all five artifacts; the refs by component name."""
    home = work / "home"
    files = {name: built_actor(name) for name in ("api", "preprocessor", "postprocessor")}
    for name, (capid, title, module) in PROVIDERS.items():
        par = work / f"{name}.par.gz"
        made = run_waft("par", "create", "-c", capid, "-v", "waft", "-n", title, "--module", module,
                        "--source", str(ROOT / "providers" / name), "--version", "0.1.0", "-r", "1", "--compress",
                        "-d", str(par), home=home)
        assert made.returncode == 0, made.stderr
        files[name] = par
    # the archives come from another key store, as pulled ones do: the test's own trusts their issuer
    trust.trust(parlib.load_par(files["httpserver"].read_bytes()).issuer)
    refs = {}
    for name, path in files.items():
        refs[name] = registry.ref(f"ml-{name}")
        pushed = run_waft("reg", "push", refs[name], str(path), "--insecure", "-o", "json", home=home)
        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout)["kind"] == ("provider" if name in PROVIDERS else "actor")
    return refs


def ml_manifest(refs: dict[str, str], *, port: int, bindle_url: str) -> Manifest:
    """deploy/ml-app.yaml with every image an OCI ref, a free port, and the test's bindle server."""
    data = yaml.safe_load((ROOT / "deploy" / "ml-app.yaml").read_text())
    for entry in data["actors"] + data["providers"]:
        entry["image"] = refs[entry["name"]]
    for link in data["links"]:
        if link["contract"] == "wasmcloud:httpserver":
            link["values"] = {"address": f"127.0.0.1:{port}"}
        else:
            link["values"] = {"config_json": json.dumps({"models": {"zoo": {
                "effnetlite0": "efficientnet-lite0/0.1.0"}}}), "bindle_url": bindle_url}
    return Manifest.parse(data, base=Path("/nonexistent"))


async def test_ml_app_from_registry_serves_matches(nats_url, lattice_prefix, registry, tmp_path):
    from httpserver_support import free_port
    from mlinference_support import bindle_server
    from waft_testing import running_host

    refs = await asyncio.to_thread(push_all, registry, tmp_path)
    labels = (ROOT / "build" / "models" / "effnetlite0" / "labels.txt").read_text().splitlines()
    cluster = KeyPair.generate(Role.CLUSTER)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with (bindle_server(tmp_path / "bindle", routes=("effnetlite0",)) as bindle,
                running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                             allowed_insecure=[registry.address], rpc_timeout_s=30),
                CtlClient.connect(nats_url, lattice_prefix, timeout=10) as ctl):
        app = ml_manifest(refs, port=port, bindle_url=bindle.url)
        assert all(a.image == refs[a.name] for a in app.actors)
        done = await reconcile(ctl, app, timeout=120)
        assert sum(line.startswith("started") for line in done) == 5, done
        assert sum(line.startswith("linked") for line in done) == 2, done
        rows = await status(ctl, app)
        assert all(row["ok"] for row in rows), rows
        state = await read_state(ctl)
        (inventory,) = state.inventories.values()
        assert {a["image_ref"] for a in inventory["actors"]} == {refs["api"], refs["preprocessor"],
                                                                 refs["postprocessor"]}
        assert {p["image_ref"] for p in inventory["providers"]} == {refs["httpserver"], refs["mlinference"]}

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            for _ in range(300):  # the httpserver provider takes its link (bounded polls, no timing)
                try:
                    async with session.get(f"{url}/healthz") as response:
                        await response.read()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            await wait_model_ready(session, url, "effnetlite0")
            async with session.put(f"{url}/effnetlite0/matches", data=chelsea_jpeg()) as response:
                body = await response.read()
                assert response.status == 200, body[:300]
            matches = json.loads(body)
            assert len(matches) == 5
            assert labels.index(matches[0]["label"]) in CATS, matches

        await undeploy(ctl, app)
        state = await read_state(ctl)
        assert all(not inv.get("actors") and not inv.get("providers") for inv in state.inventories.values())
