"""Issue 7: `waft app deploy|status|list|undeploy` with the real ML manifest against a running lattice.

`waft up --push-models` runs in a subprocess with its own $WAFT_HOME; deploy/ml-app.yaml is copied with a
free port and absolute build paths. Deploying reaches the declared state (and serves /matches), editing a
count and a link value and re-deploying reconciles to the new state, and undeploying removes it all.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_up import processes_mentioning
from waft_testing import ROOT, run_waft, waft_up_process

pytestmark = pytest.mark.timeout(300)
CATS = range(281, 286)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lattice:
    """A `waft up` in a subprocess: its URLs, its $WAFT_HOME, and `waft` run against it."""

    home: Path
    nats_url: str
    bindle_url: str
    log: Path

    def waft(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_waft(*args, home=self.home, timeout=timeout, cwd=cwd)

    def ok(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `waft ARGS` (lattice flags added where the command takes them) and require exit 0."""
        done = self.waft(*args, timeout=timeout, cwd=cwd)
        assert done.returncode == 0, f"waft {' '.join(args)}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> object:
        return json.loads(self.ok(*args, "-o", "json").stdout)


def wait_lattice_stopped(home: Path) -> None:
    """Every process that `waft up` started (nats-server, provider children carry WAFT_HOME) is gone."""
    for _ in range(300):
        if not processes_mentioning(str(home)):
            return
        time.sleep(0.1)
    assert processes_mentioning(str(home)) == []


def wait_ready(log: Path, proc: subprocess.Popen[bytes] | None = None, *, attempts: int = 1200) -> dict[str, str]:
    """The URLs a `waft up` printed once it says "lattice is up" (polls its log file; never times)."""
    for _ in range(attempts):
        text = log.read_text() if log.exists() else ""
        if "lattice is up" in text:
            return dict(re.findall(r"^\s*(nats|bindle|host|dashboard)\s+(\S+)\s*$", text, re.M))
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"waft up exited with {proc.returncode}:\n{text[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"waft up never became ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_lattice(tmp_path: Path, *extra: str) -> Iterator[Lattice]:
    """`waft up --nats-port 0 --bindle-address 127.0.0.1:0 --no-dashboard EXTRA` in the foreground of a
    subprocess; SIGTERM on exit, and nothing it started may be left running."""
    home = tmp_path / "lattice-home"
    home.mkdir()
    log = tmp_path / "up.log"
    with waft_up_process(home, log, "--nats-port", "0", "--bindle-address", "127.0.0.1:0", "--no-dashboard",
                         *extra, columns=200) as (urls, _):
        yield Lattice(home, urls["nats"], urls["bindle"], log)
    wait_lattice_stopped(home)


def ml_manifest(path: Path, *, port: int, counts: dict[str, int] | None = None) -> Path:
    """deploy/ml-app.yaml, with absolute image paths, the HTTP address on `port`, and edited counts."""
    data = yaml.safe_load((ROOT / "deploy" / "ml-app.yaml").read_text())
    for actor in data["actors"]:
        actor["image"] = str((ROOT / "deploy" / actor["image"]).resolve())
        actor["count"] = (counts or {}).get(actor["name"], actor["count"])
    for link in data["links"]:
        if link["contract"] == "wasmcloud:httpserver":
            link["values"]["address"] = f"127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def chelsea_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def http(method: str, url: str, body: bytes | None = None, *, timeout: float = 60) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, *, ok: bool = True, attempts: int = 1200) -> int | None:
    """Poll until `url` answers 200 (ok=True), or until connecting is refused (ok=False); bounded polls."""
    last: object = None
    for _ in range(attempts):
        try:
            last, _ = http("GET", url, timeout=10)
            if ok and last == 200:
                return last
        except OSError as exc:
            last = exc
            if not ok and isinstance(getattr(exc, "reason", exc), ConnectionRefusedError):
                return None
        time.sleep(0.1)
    raise AssertionError(f"{url}: still {last!r}")


def status_rows(lattice: Lattice, manifest: Path) -> dict[str, dict]:
    rows = lattice.json("app", "status", str(manifest), "--nats-url", lattice.nats_url)
    return {row["name"]: row for row in rows}  # type: ignore[union-attr]


def test_app_deploy_edit_redeploy_undeploy_the_ml_app(tmp_path: Path) -> None:
    port, new_port = free_port(), free_port()
    manifest = ml_manifest(tmp_path / "ml-app.yaml", port=port)
    labels = (ROOT / "build" / "models" / "effnetlite0" / "labels.txt").read_text().splitlines()
    with running_lattice(tmp_path, "--push-models") as lattice:
        nats = ("--nats-url", lattice.nats_url)
        deployed = lattice.ok("app", "deploy", str(manifest), *nats)
        for line in ("started 2 x actor api", "started 2 x actor preprocessor", "started 1 x actor postprocessor",
                     "started provider httpserver", "started provider mlinference",
                     "linked api -> httpserver", "linked api -> mlinference"):
            assert f"ml-app: {line}" in deployed.stdout, deployed.stdout
        rows = status_rows(lattice, manifest)
        assert all(row["ok"] for row in rows.values()), rows
        assert rows["api"]["running"] == 2 and rows["postprocessor"]["running"] == 1
        listed = lattice.json("app", "list", *nats)
        assert [(a["name"], a["source"]) for a in listed] == [("ml-app", str(manifest))]  # type: ignore[union-attr]
        # the declared state serves: chelsea is a cat
        wait_http(f"http://127.0.0.1:{port}/v2/models/effnetlite0/ready")
        code, body = http("PUT", f"http://127.0.0.1:{port}/effnetlite0/matches", chelsea_jpeg())
        assert code == 200, body[:300]
        assert labels.index(json.loads(body)[0]["label"]) in CATS, body
        # the same manifest again changes nothing
        again = lattice.ok("app", "deploy", str(manifest), *nats)
        assert again.stdout.strip() == "ml-app: already in the declared state", again.stdout

        # edit two counts (one up, one down) and the HTTP link's address; re-deploy reconciles to it
        ml_manifest(manifest, port=new_port, counts={"preprocessor": 3, "api": 1})
        redeployed = lattice.ok("app", "deploy", str(manifest), *nats)
        assert "ml-app: started 1 x actor preprocessor" in redeployed.stdout, redeployed.stdout
        assert "ml-app: scaled actor api down to 1" in redeployed.stdout, redeployed.stdout
        assert "ml-app: linked api -> httpserver (wasmcloud:httpserver)" in redeployed.stdout, redeployed.stdout
        assert "linked api -> mlinference" not in redeployed.stdout  # unchanged link left alone
        assert "provider" not in redeployed.stdout
        rows = status_rows(lattice, manifest)
        assert {name: row["running"] for name, row in rows.items()} == {
            "api": 1, "preprocessor": 3, "postprocessor": 1, "httpserver": 1, "mlinference": 1}, rows
        assert all(row["ok"] for row in rows.values()), rows
        links = lattice.json("ctl", "get", "links", *nats)
        http_links = [ln for ln in links if ln["contract_id"] == "wasmcloud:httpserver"]  # type: ignore[union-attr]
        assert [ln["values"] for ln in http_links] == [{"address": f"127.0.0.1:{new_port}"}]
        wait_http(f"http://127.0.0.1:{new_port}/v2/models/effnetlite0/ready")
        wait_http(f"http://127.0.0.1:{port}/healthz", ok=False)
        code, body = http("PUT", f"http://127.0.0.1:{new_port}/effnetlite0/matches", chelsea_jpeg())
        assert code == 200 and labels.index(json.loads(body)[0]["label"]) in CATS, body[:300]

        undeployed = lattice.ok("app", "undeploy", str(manifest), *nats)
        assert "ml-app: stopped provider mlinference" in undeployed.stdout, undeployed.stdout
        rows = status_rows(lattice, manifest)
        assert all(row["running"] == 0 for row in rows.values()), rows
        inventories = lattice.json("ctl", "get", "inventory", *nats)
        assert all(not inv["actors"] and not inv["providers"] for inv in inventories), inventories  # type: ignore
        assert lattice.json("ctl", "get", "links", *nats) == []
        # the app stays stored (as wadm keeps it), undeployed
        assert [(a["name"], a["status"], a["deployed"]) for a in lattice.json("app", "list", *nats)] == [
            ("ml-app", "undeployed", "")]  # type: ignore[union-attr,index]
        wait_http(f"http://127.0.0.1:{new_port}/healthz", ok=False)
        gone = lattice.ok("app", "undeploy", str(manifest), *nats)
        assert gone.stdout.strip() == "ml-app: nothing was running"


def wadm_ml_manifest(path: Path, *, port: int) -> Path:
    """deploy/ml-app.wadm.yaml, with absolute image paths and the HTTP address on `port`."""
    data = yaml.safe_load((ROOT / "deploy" / "ml-app.wadm.yaml").read_text())
    for component in data["spec"]["components"]:
        props = component["properties"]
        if component["type"] == "actor":
            props["image"] = str((ROOT / "deploy" / props["image"]).resolve())
        for trait in component.get("traits", []):
            if trait["type"] == "linkdef" and trait["properties"]["target"] == "httpserver":
                trait["properties"]["values"]["address"] = f"127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_wadm_manifest_serves_the_ml_app_and_undeploy_spares_a_hand_started_actor(tmp_path: Path) -> None:
    """Issue 16: the OAM manifest deploys and answers /matches; `wash app`'s commands by name; undeploy stops
    what the app started and nothing else."""
    port = free_port()
    manifest = wadm_ml_manifest(tmp_path / "ml-app.wadm.yaml", port=port)
    postprocessor = str((ROOT / "build" / "actors" / "postprocessor_s.wasm").resolve())
    labels = (ROOT / "build" / "models" / "effnetlite0" / "labels.txt").read_text().splitlines()
    with running_lattice(tmp_path, "--push-models") as lattice:
        nats = ("--nats-url", lattice.nats_url)
        lattice.ok("ctl", "start", "actor", postprocessor, *nats)  # by hand, before the app
        assert lattice.json("app", "put", str(manifest), *nats) == {
            "app": "ml-app", "version": "0.1.0", "actions": ["version 0.1.0 stored"]}
        assert lattice.json("app", "get", "ml-app", *nats)["metadata"]["annotations"]["version"] == "0.1.0"  # type: ignore
        deployed = lattice.json("app", "deploy", "ml-app", "0.1.0", *nats)
        assert "started 1 x actor postprocessor" in deployed["actions"], deployed  # type: ignore[index]
        (listed,) = lattice.json("app", "list", *nats)  # type: ignore[misc]
        assert (listed["name"], listed["deployed"], listed["status"]) == ("ml-app", "0.1.0", "deployed")
        assert [h["version"] for h in lattice.json("app", "history", "ml-app", *nats)] == ["0.1.0"]  # type: ignore
        rows = {r["name"]: r for r in lattice.json("app", "status", "ml-app", *nats)}  # type: ignore[union-attr]
        assert rows["postprocessor"]["running"] == 1 and all(r["ok"] for r in rows.values()), rows

        wait_http(f"http://127.0.0.1:{port}/v2/models/effnetlite0/ready")
        code, body = http("PUT", f"http://127.0.0.1:{port}/effnetlite0/matches", chelsea_jpeg())
        assert code == 200, body[:300]
        assert labels.index(json.loads(body)[0]["label"]) in CATS, body

        refused = lattice.waft("app", "del", "ml-app", *nats)
        assert refused.returncode == 1 and "is deployed" in refused.stderr, refused.stderr
        undeployed = lattice.ok("app", "undeploy", "ml-app", *nats)
        assert "ml-app: stopped 1 x actor postprocessor" in undeployed.stdout, undeployed.stdout
        (inventory,) = lattice.json("ctl", "get", "inventory", *nats)  # type: ignore[misc]
        assert [(a["image_ref"], [i["annotations"] for i in a["instances"]]) for a in inventory["actors"]] == [
            (postprocessor, [{}])], inventory  # the hand-started instance, and nothing of the app's
        assert inventory["providers"] == []
        wait_http(f"http://127.0.0.1:{port}/healthz", ok=False)
        assert lattice.ok("app", "del", "ml-app", *nats).stdout.strip() == "ml-app: every version deleted"
        assert lattice.json("app", "list", *nats) == []
