"""Issue 14's acceptance, against exactly what `make run` starts: `waft up --push-models --app deploy/ml-app.yaml`.

On free ports, in a fresh $WAFT_HOME (as a clean clone's first run): a NATS client without credentials is
refused, a dashboard POST without the token is refused, an anonymous bindle push is refused, the app serves
`/effnetlite0/matches` and the README's other curl lines, and the README's `waft` commands work with no
flags. `make run` listens on the default ports, which every command finds; here `WAFT_NATS_URL` and
`BINDLE_URL` say where the free ports are, the same defaults a user never types.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
import yaml
from waft_testing import ROOT, waft_up_process

pytestmark = [pytest.mark.timeout(420),
              pytest.mark.skipif(not (ROOT / "build" / "actors" / "api_s.wasm").exists(),
                                 reason="actors not built (make actors)")]
CATS = range(281, 286)  # ImageNet's domestic cats: chelsea is one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class MakeRun:
    home: Path
    urls: dict[str, str]
    app: str
    env: dict[str, str]

    def waft(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`waft ARGS` exactly as typed: no flag added."""
        done = subprocess.run([sys.executable, "-m", "waft", *args], env=self.env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"waft {' '.join(args)}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done


def ml_app(path: Path, port: int) -> Path:
    """deploy/ml-app.yaml as is, but for the HTTP address (a free port) and image paths made absolute."""
    data = yaml.safe_load((ROOT / "deploy" / "ml-app.yaml").read_text())
    for actor in data["actors"]:
        actor["image"] = str((ROOT / "deploy" / actor["image"]).resolve())
    for link in data["links"]:
        if link["contract"] == "wasmcloud:httpserver":
            link["values"]["address"] = f"127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextlib.contextmanager
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    """`waft up --push-models --app ml-app.yaml` in the foreground of a subprocess; SIGTERM after, and it must exit 0
    with nothing it started left running."""
    port = free_port()
    manifest = ml_app(tmp_path / "ml-app.yaml", port)
    home = tmp_path / "up-home"  # a clean clone's first run: nothing in it yet
    home.mkdir()
    log = tmp_path / "up.log"
    # up prints "try: curl" once the app's model answers ready
    with waft_up_process(home, log, "--push-models", "--app", str(manifest), "--nats-port", "0", "--bindle-address",
                         "127.0.0.1:0", "--dashboard-address", "127.0.0.1:0", ready=("lattice is up", "try: curl"),
                         stop_wait=90) as (urls, env):
        yield MakeRun(home, urls, f"http://127.0.0.1:{port}",
                      {**env, "WAFT_NATS_URL": urls["nats"], "BINDLE_URL": urls["bindle"]})
    for _ in range(300):
        if not _processes_with(str(home)):
            break
        time.sleep(0.1)
    assert _processes_with(str(home)) == []


def _processes_with(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes():
                    found.append(entry.name)
    return found


async def anonymous_nats(url: str) -> str:
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3,
                                error_cb=_quiet)
    except (nats.errors.Error, OSError) as exc:
        return str(exc).lower()
    await nc.close()
    return ""


async def _quiet(exc: Exception) -> None:
    pass


def chelsea_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)  # what `make run` writes as build/cat.jpg
    return buffer.getvalue()


def test_make_run_is_locked_and_serves(tmp_path: Path) -> None:
    labels = (ROOT / "build" / "models" / "effnetlite0" / "labels.txt").read_text().splitlines()
    with make_run(tmp_path) as run:
        # refused: NATS without credentials, a dashboard write without the token, an anonymous bindle push
        assert "authorization violation" in asyncio.run(anonymous_nats(run.urls["nats"]))
        dashboard = run.urls["dashboard"].split("?", 1)[0]
        status, _ = http("POST", dashboard + "api/providers", json.dumps({"ref": "python:waft_httpserver"}).encode(),
                         {"Content-Type": "application/json"})
        assert status in (401, 403), status
        invoice = b'bindleVersion = "1.0.0"\n\n[bindle]\nname = "anonymous/model"\nversion = "0.1.0"\n'
        status, _ = http("POST", run.urls["bindle"].rstrip("/") + "/_i", invoice, {"Content-Type": "application/toml"})
        assert status in (401, 403), status

        # served: the README's curl lines
        status, body = http("PUT", run.app + "/effnetlite0/matches", chelsea_jpeg())
        assert status == 200, body[:300]
        matches = json.loads(body)
        assert len(matches) == 5 and labels.index(matches[0]["label"]) in CATS, matches
        status, body = http("PUT", run.app + "/effnetlite0/matches?k=3", chelsea_jpeg())
        assert status == 200 and [m["label"] for m in json.loads(body)] == [m["label"] for m in matches[:3]]
        ones = {"dimensions": [1, 4], "valueTypes": ["ValueF32"], "flags": 0,
                "data": list(struct.pack("<4f", 1, 2, 3, 4))}
        status, body = http("POST", run.app + "/identity", json.dumps(ones).encode())
        assert status == 200 and json.loads(body) == {"result": "Success", "tensor": ones}, body[:300]
        status, body = http("GET", run.app + "/models")
        assert status == 200 and b"effnetlite0" in body
        status, body = http("GET", run.app + "/v2/models/effnetlite0")
        assert status == 200 and json.loads(body)["name"] == "effnetlite0"

        # the README's commands, with no flags: the stored credentials and cluster key are found by themselves
        (host,) = json.loads(run.waft("ctl", "get", "hosts", "-o", "json").stdout)
        assert host["id"] == run.urls["host"]
        (inventory,) = json.loads(run.waft("ctl", "get", "inventory", "-o", "json").stdout)
        assert {a["name"] for a in inventory["actors"]} >= {"api", "preprocessor", "postprocessor"}, inventory
        api = next(a["id"] for a in inventory["actors"] if a["name"] == "api")
        assert api in {c["sub"] for c in json.loads(run.waft("ctl", "get", "claims", "-o", "json").stdout)}
        links = json.loads(run.waft("ctl", "link", "query", "-o", "json").stdout)
        assert {link["contract_id"] for link in links} == {"wasmcloud:httpserver", "wasmcloud:mlinference"}
        assert json.loads(run.waft("ctl", "get", "links", "-o", "json").stdout) == links
        request = json.dumps({"method": "GET", "path": "/models", "queryString": "", "header": {}, "body": ""})
        answer = json.loads(run.waft("ctl", "call", api, "HttpServer.HandleRequest", request, "-o", "json").stdout)
        assert answer["statusCode"] == 200, answer
        assert [a["name"] for a in json.loads(run.waft("app", "list", "-o", "json").stdout)] == ["ml-app"]
        rows = json.loads(run.waft("app", "status", "ml-app", "-o", "json").stdout)
        assert rows and all(row["ok"] for row in rows), rows
        assert "effnetlite0" in run.waft("models", "list").stdout
        pushed = json.loads(run.waft("models", "push", "identity", "-o", "json").stdout)  # bindle's stored login
        assert pushed[0]["bindle_id"] == "identity_model/0.2.0", pushed
        assert "efficientnet-lite0" in run.waft("bindle", "search", "-q", "efficientnet-lite0").stdout
