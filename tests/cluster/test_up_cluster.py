"""The three-machine layout of docs/scale-out.md, with its commands, on 127.0.0.2-4: three `waft up`
processes whose embedded nats-servers form one cluster, each with its own home (the keys copied from
the first, as the document says), then `waft ctl` through any member sees all three hosts, and the
lattice cache has three replicas."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tools.chaos_cluster import free_port_on, member_address

pytestmark = pytest.mark.timeout(240)


def _start_up(home: Path, index: int, cluster_ports: list[int]) -> subprocess.Popen[str]:
    address = member_address(index)
    routes = ",".join(f"nats-route://{member_address(i)}:{p}" for i, p in enumerate(cluster_ports))
    return subprocess.Popen(
        [sys.executable, "-m", "waft", "up", "--nats-host", address, "--nats-port", "0",
         "--cluster-listen", f"{address}:{cluster_ports[index]}", "--route", routes, "--server-name", f"m{index}",
         "--no-bindle", "--no-dashboard"],
        env={**os.environ, "WAFT_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _urls(proc: subprocess.Popen[str], seen: list[str]) -> dict[str, str]:
    """What `waft up` prints once the lattice is up (name -> URL or id; it reads its own output until then)."""
    assert proc.stdout is not None
    urls: dict[str, str] = {}
    for line in proc.stdout:
        seen.append(line)
        words = line.split()
        if len(words) == 2:
            urls[words[0]] = words[1]
        if "lattice is up" in line:
            return urls
    raise AssertionError("waft up exited before the lattice was up:\n" + "".join(seen))


def _nats_url(proc: subprocess.Popen[str], seen: list[str]) -> str:
    return _urls(proc, seen)["nats"]


def _make_keys(homes: list[Path]) -> None:
    """The first machine makes the lattice's keys (docs/scale-out.md); the others get a copy."""
    env0 = {**os.environ, "WAFT_HOME": str(homes[0])}
    for role, name in (("cluster", "cluster"), ("user", "nats_host"), ("user", "nats_provider")):
        subprocess.run([sys.executable, "-m", "waft", "keys", "gen", role, "--name", name], env=env0,
                       capture_output=True, check=True, timeout=60)
    for home in homes[1:]:
        shutil.copytree(homes[0] / "keys", home / "keys")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_three_waft_ups_form_one_lattice(tmp_path: Path) -> None:
    ports = [free_port_on(member_address(i)) for i in range(3)]
    homes = [tmp_path / f"machine-{i}" for i in range(3)]
    procs: list[subprocess.Popen[str]] = []
    logs: list[list[str]] = [[], [], []]
    try:
        _make_keys(homes)
        procs.append(_start_up(homes[0], 0, ports))
        for i in (1, 2):
            procs.append(_start_up(homes[i], i, ports))
        urls = [_nats_url(p, log) for p, log in zip(procs, logs, strict=True)]
        assert [u.split("://")[1].split(":")[0] for u in urls] == [member_address(i) for i in range(3)]
        env = {**os.environ, "WAFT_HOME": str(homes[2])}
        hosts = subprocess.run([sys.executable, "-m", "waft", "ctl", "get", "hosts", "-o", "json", "--nats-url",
                                ",".join(urls)], env=env, capture_output=True, text=True, timeout=60)
        assert hosts.returncode == 0, hosts.stderr
        assert len(json.loads(hosts.stdout)) == 3, hosts.stdout
        # a client without the lattice's key is refused by a member
        anonymous = subprocess.run([sys.executable, "-m", "waft", "ctl", "get", "hosts", "--nats-url", urls[1]],
                                   env={**os.environ, "WAFT_HOME": str(tmp_path / "stranger")}, capture_output=True,
                                   text=True, timeout=60)
        assert anonymous.returncode != 0
        import asyncio

        import nats

        from waft.claims.keys import KeyPair
        from waft.lattice import subjects

        seed = KeyPair.from_seed((homes[1] / "keys" / "nats_host.nk").read_text()).seed

        async def replicas() -> int:
            nc = await nats.connect(urls[1], nkeys_seed_str=seed)
            try:
                info = await nc.jetstream().stream_info(subjects.lattice_cache_stream("default"))
                return info.config.num_replicas
            finally:
                await nc.close()

        assert asyncio.run(replicas()) == 3
    finally:
        for proc in reversed(procs):
            _stop(proc)
    for log in logs:
        assert not any("Traceback" in line for line in log), "".join(log)



def _waft(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "waft", *args], env={**os.environ, "WAFT_HOME": str(home)},
                          capture_output=True, text=True, timeout=60)


def test_a_waft_up_leaf_node_serves_an_actor_called_from_the_hub(tmp_path: Path) -> None:
    """`waft up --leaf-listen` on one machine, `waft up --leaf-remote --leaf-credentials` on another: the
    second's host is on the leaf side, and an actor it runs answers a call made through the hub."""
    import msgpack

    from tools.paths import ROOT, built_actor_issuers
    from waft.claims import inspect_actor

    homes = [tmp_path / "hub", tmp_path / "leaf"]
    _make_keys(homes)
    leaf_port = free_port_on("127.0.0.1")
    trust = {"WAFT_TRUSTED_ISSUERS": built_actor_issuers()}
    common = ["--nats-port", "0", "--no-bindle", "--no-dashboard"]
    procs: list[subprocess.Popen[str]] = []
    logs: list[list[str]] = [[], []]
    try:
        for home, flags in ((homes[0], ["--leaf-listen", f"127.0.0.1:{leaf_port}"]),
                            (homes[1], ["--leaf-remote", f"nats-leaf://127.0.0.1:{leaf_port}", "--leaf-credentials",
                                        str(homes[1] / "keys" / "nats_host.nk")])):
            procs.append(subprocess.Popen([sys.executable, "-m", "waft", "up", *common, *flags],
                                          env={**os.environ, **trust, "WAFT_HOME": str(home)}, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, start_new_session=True))
        hub, leaf = (_urls(p, log) for p, log in zip(procs, logs, strict=True))
        assert hub["nats"] != leaf["nats"]
        hosts: list[dict[str, object]] = []
        while len(hosts) < 2:  # until the leaf connection carries the leaf host's answer; bounded by the timeout
            listed = _waft(homes[0], "ctl", "get", "hosts", "-o", "json", "--nats-url", hub["nats"])
            assert listed.returncode == 0, listed.stderr
            hosts = json.loads(listed.stdout)
        assert {h["id"] for h in hosts} == {hub["host"], leaf["host"]}
        echo = ROOT / "build" / "actors" / "echo_s.wasm"
        actor_id = inspect_actor(echo.read_bytes()).subject
        started = _waft(homes[0], "ctl", "start", "actor", str(echo), "--host-id", leaf["host"], "--nats-url",
                        hub["nats"])
        assert started.returncode == 0, started.stdout + started.stderr
        def actors_on(host_id: str) -> list[str]:
            inventory = _waft(homes[1], "ctl", "get", "inventory", host_id, "-o", "json", "--nats-url", leaf["nats"])
            return [a["id"] for a in json.loads(inventory.stdout)["actors"]]

        assert actors_on(leaf["host"]) == [actor_id] and actors_on(hub["host"]) == []  # the call must cross
        request = json.dumps({"method": "GET", "path": "/across-the-leaf", "queryString": "", "header": {},
                              "body": ""})
        saved = tmp_path / "answer.bin"
        called = _waft(homes[0], "call", actor_id, "HttpServer.HandleRequest", request, "--save", str(saved),
                       "--nats-url", hub["nats"], "-t", "10000")
        assert called.returncode == 0, called.stdout + called.stderr
        answer = msgpack.unpackb(saved.read_bytes(), raw=False)
        assert answer["statusCode"] == 200 and json.loads(answer["body"])["path"] == "/across-the-leaf"
    finally:
        for proc in reversed(procs):
            _stop(proc)
    for log in logs:
        assert not any("Traceback" in line for line in log), "".join(log)
