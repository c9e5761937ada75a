"""`waft up` as a user runs it: one process brings up NATS, bindle, host and an app; SIGTERM stops all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from waft_testing import built_actor, echo_app_manifest

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_mentioning(text: str) -> list[str]:
    """Processes with `text` in their command line or environment: nats-server's config path, and every
    provider child (they inherit WAFT_HOME)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob:
            found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes().replace(bytes(1), b' ').decode()[:120]}")
    return found


def test_up_serves_an_app_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    manifest = echo_app_manifest(tmp_path / "app.yaml", "echo-test", port)
    home = tmp_path / "home"
    env = {**os.environ, "WAFT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "waft", "up", "--nats-port", "0", "--bindle-address",
                             "127.0.0.1:0", "--no-dashboard", "--app", str(manifest)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        body = None
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello?x=1", timeout=2) as response:
                    body = response.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.1)
        assert body is not None, "the app never answered"
        assert b'"path":"/hello"' in body and b'"queryString":"x=1"' in body
        running = processes_mentioning(str(home))
        assert any("nats-server" in p for p in running) and any("waft_httpserver" in p for p in running), running
        for line in proc.stdout or ():  # up printed its URLs before (or while) the app answered
            seen.append(line)
            if "lattice is up" in line:
                break
        nats_url = next(line.split()[1] for line in seen if line.split()[:1] == ["nats"])
        _the_app_is_kept_as_deployed(proc, {**env, "WAFT_NATS_URL": nats_url}, "echo-test")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        # read, not communicate: the lines read above left the rest of their chunk in the file's buffer
        output = "".join(seen) + (proc.stdout.read() if proc.stdout else "")
    assert proc.returncode == 0, output
    assert "lattice is up" in output
    assert f"try: curl http://127.0.0.1:{port}/" in output  # printed once the app answered (issue 6)
    for _ in range(100):  # children may take a moment to be reaped
        if not processes_mentioning(str(home)):
            break
        time.sleep(0.1)
    assert processes_mentioning(str(home)) == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def _the_app_is_kept_as_deployed(proc: subprocess.Popen[str], env: dict[str, str], name: str) -> None:
    """`up --app` stores the app as deployed (as `waft app deploy FILE` does), so the reconciler restores its
    actor after someone stops it."""
    from waft.claims import inspect_actor

    def waft(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "waft", *args, "-o", "json"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    apps = {a["name"]: a for a in json.loads(waft("app", "list"))}
    assert apps[name]["deployed"] == apps[name]["latest"] and apps[name]["status"] == "deployed", apps
    (host,) = json.loads(waft("ctl", "get", "hosts"))
    echo = inspect_actor(built_actor("echo").read_bytes()).subject

    def echoes() -> list[str]:
        inventory = json.loads(waft("ctl", "get", "inventory", host["id"]))
        return [i["instance_id"] for a in inventory["actors"] if a["id"] == echo for i in a["instances"]]

    (first,) = echoes()
    waft("ctl", "stop", "actor", host["id"], echo)
    while (now := echoes()) in ([], [first]):  # gone, then back from the reconciler; bounded by the test's timeout
        assert proc.poll() is None, "waft up exited"
        time.sleep(0.1)
    assert len(now) == 1 and now != [first]


def test_up_refuses_a_taken_port_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "waft", "up", "--nats-port", str(port), "--no-bindle",
                                 "--no-dashboard"], env={**os.environ, "WAFT_HOME": str(tmp_path)},
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr and "--nats-url" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_waits_for_the_ml_apps_model_and_says_what_to_try() -> None:
    """`make run` deploys deploy/ml-app.yaml: `up` polls effnetlite0's KServe ready route, then prints the curl."""
    from waft.up import app_http

    target = app_http(Path(__file__).resolve().parents[2] / "deploy" / "ml-app.yaml")
    assert target is not None
    assert target.url == "http://127.0.0.1:8078" and target.model == "effnetlite0"
    assert target.ready_path == "/v2/models/effnetlite0/ready"
    assert target.try_line == "try: curl -T cat.jpg http://127.0.0.1:8078/effnetlite0/matches"
