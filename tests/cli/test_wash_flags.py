"""Issue 16: where `waft` has a wash 0.x command or flag, it means what wash means — each checked against real parts.

`ctl stop actor` stops one instance unless told otherwise; `reg pull -d` is a digest and credentials come
from `-u/-p` or `WASH_REG_USER/WASH_REG_PASSWORD`; `ctl start provider --config-json` names a file;
`-o json` and `--verbose` work before or after any command, and errors in JSON mode are wash's
`{"success": false, "error": …}` on stdout; `waft call` takes `--data FILE` and `--save FILE`; the
`WASMCLOUD_CTL_*` and `WASMCLOUD_CLUSTER_SEED` variables are read. The CLI runs as a user runs it (a
subprocess); hosts run in the test's event loop on the suite's nats-server, so CLI calls are awaited.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import msgpack
import pytest
from waft_testing import built_actor, docker_registry, running_host

from waft.claims import KeyPair, Role
from waft.cli.main import build_parser
from waft.lattice import LatticeConfig, LatticeRpc, WasmCloudEntity
from waft.lattice.codec import pack
from waft.lattice.types import LinkDefinition

pytestmark = pytest.mark.timeout(240)
#: Variables a developer's shell may hold that would change what these commands do.
FOREIGN = ("WAFT_NATS_URL", "WAFT_CTL_TIMEOUT_MS", "WAFT_CLUSTER_SEED", "WAFT_REG_USER", "WAFT_REG_PASSWORD",
           "WASH_REG_USER", "WASH_REG_PASSWORD", "WASMCLOUD_CTL_HOST", "WASMCLOUD_CTL_PORT",
           "WASMCLOUD_CTL_TIMEOUT_MS", "WASMCLOUD_CLUSTER_SEED", "WASMCLOUD_LATTICE_PREFIX")


def environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    return {**env, "WAFT_HOME": str(home), "COLUMNS": "200", **(extra or {})}


def waft_sync(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "waft", *args], capture_output=True, text=True, timeout=120,
                          env=environment(home, env))


async def waft(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`waft ARGS` in a subprocess, awaited, so the host in this event loop keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "waft", *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=environment(home, env))
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return subprocess.CompletedProcess(list(args), proc.returncode or 0, out.decode(), err.decode())


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"waft {' '.join(done.args)}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


async def test_stop_actor_stops_one_and_json_goes_anywhere(nats_url, lattice_prefix, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        lattice = ("--nats-url", nats_url, "-x", lattice_prefix)
        ok(await waft("ctl", "start", "actor", str(built_actor("echo")), "--count", "3", *lattice, home=tmp_path))
        (actor_id,) = host.actors
        # wash: `--count` defaults to 1; a text-only command answers JSON in JSON mode
        stopped = ok(await waft("ctl", "stop", "actor", host.host_id, actor_id, *lattice, "-o", "json",
                                home=tmp_path))
        assert json.loads(stopped.stdout) == {"success": True, "message": f"actor {actor_id} stopped"}
        assert host.actors[actor_id].count == 2
        ok(await waft("ctl", "stop", "actor", host.host_id, actor_id, "--count", "2", *lattice, home=tmp_path))
        assert actor_id not in host.actors

        # -o json before the command or after it; the wash variables name NATS and the lattice
        before = ok(await waft("-o", "json", "ctl", "get", "hosts", *lattice, home=tmp_path))
        after = ok(await waft("ctl", "get", "hosts", *lattice, "--output", "json", home=tmp_path))
        assert [h["id"] for h in json.loads(before.stdout)] == [h["id"] for h in json.loads(after.stdout)] == [
            host.host_id]
        host_part, _, port = nats_url.removeprefix("nats://").rpartition(":")
        wash_env = {"WASMCLOUD_CTL_HOST": host_part, "WASMCLOUD_CTL_PORT": port,
                    "WASMCLOUD_LATTICE_PREFIX": lattice_prefix}
        found = ok(await waft("ctl", "get", "hosts", "-o", "json", home=tmp_path, env=wash_env))
        assert [h["id"] for h in json.loads(found.stdout)] == [host.host_id]

        # errors in JSON mode: wash's shape on stdout, a nonzero exit, for a refusal and for bad usage
        refused = await waft("-o", "json", "ctl", "stop", "actor", host.host_id, "M" + "A" * 55, *lattice,
                             home=tmp_path)
        assert refused.returncode == 1, refused
        assert json.loads(refused.stdout) == {"success": False,
                                              "error": f"actor {'M' + 'A' * 55} is not running on this host"}
        usage = await waft("ctl", "stop", "actor", "-o", "json", home=tmp_path)
        assert usage.returncode == 2 and json.loads(usage.stdout)["success"] is False, usage
        assert "the following arguments are required: host_id, actor_id" in json.loads(usage.stdout)["error"]
        unreachable = await waft("app", "list", "--nats-url", "nats://127.0.0.1:1", "-o", "json", home=tmp_path)
        assert unreachable.returncode == 1 and json.loads(unreachable.stdout)["error"].startswith(
            "cannot reach NATS at nats://127.0.0.1:1")
        text = await waft("app", "list", "--nats-url", "nats://127.0.0.1:1", home=tmp_path)
        assert text.stdout == "" and "error: cannot reach NATS" in text.stderr  # text mode is unchanged


def leaf_parsers(parser: argparse.ArgumentParser,
                 path: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    found = {}
    for name, child in subs[0].choices.items():
        found.update(leaf_parsers(child, (*path, name)))
    return found


def test_every_command_takes_output_and_verbose_after_it(tmp_path: Path) -> None:
    leaves = leaf_parsers(build_parser())
    assert ("call",) in leaves and ("app", "history") in leaves and len(leaves) > 40
    missing = [" ".join(path) for path, p in leaves.items()
               if not {"-o", "--output", "--verbose"} <= set(p._option_string_actions)]
    assert missing == []
    # --verbose after the command shows the traceback the one-line error offers
    quiet = waft_sync("ctl", "get", "hosts", "--nats-url", "nats://127.0.0.1:1", home=tmp_path)
    loud = waft_sync("ctl", "get", "hosts", "--nats-url", "nats://127.0.0.1:1", "--verbose", home=tmp_path)
    assert quiet.returncode == loud.returncode == 1
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr
    # a command that prints no JSON of its own is wrapped in JSON mode, before or after it
    for args in (("-o", "json", "keys", "gen", "module"), ("claims", "inspect", str(built_actor("echo")), "-o",
                                                             "json")):
        done = ok(waft_sync(*args, home=tmp_path))
        assert isinstance(json.loads(done.stdout), dict), done.stdout


def test_wash_connection_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FOREIGN:
        monkeypatch.delenv(name, raising=False)

    def parsed(*args: str) -> argparse.Namespace:
        return build_parser().parse_args(list(args))

    assert (parsed("ctl", "get", "hosts").nats_url, parsed("app", "list").timeout_ms) == (
        "nats://127.0.0.1:4222", 5000)
    monkeypatch.setenv("WASMCLOUD_CTL_HOST", "10.1.2.3")
    monkeypatch.setenv("WASMCLOUD_CTL_PORT", "4333")
    monkeypatch.setenv("WASMCLOUD_CTL_TIMEOUT_MS", "1234")
    for args in (("ctl", "get", "hosts"), ("app", "list"), ("call", "M", "Op")):
        assert (parsed(*args).nats_url, parsed(*args).timeout_ms) == ("nats://10.1.2.3:4333", 1234), args
    assert parsed("ctl", "get", "hosts", "-t", "99").timeout_ms == 99  # the flag wins
    monkeypatch.setenv("WAFT_NATS_URL", "nats://waft:4222")
    assert parsed("ctl", "get", "hosts").nats_url == "nats://waft:4222"  # Waft's own variable first
    monkeypatch.setenv("WASMCLOUD_CTL_TIMEOUT_MS", "soon")
    with pytest.raises(SystemExit) as info:
        parsed("ctl", "get", "hosts")
    assert info.value.code == 2


async def test_config_json_is_a_file_and_config_text_is_json(nats_url, lattice_prefix, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        lattice = ("--nats-url", nats_url, "-x", lattice_prefix, "-t", "10000")
        config = tmp_path / "provider.json"
        config.write_text('{"greeting": "from a file"}')
        ok(await waft("ctl", "start", "provider", "python:waft_testprovider", "--config-json", str(config),
                      *lattice, home=tmp_path))
        ok(await waft("ctl", "start", "provider", "python:waft_testprovider", "-l", "inline", "--config-text",
                      '{"greeting": "inline"}', *lattice, home=tmp_path))
        (config.with_suffix(".txt")).write_text("not json")
        bad = await waft("ctl", "start", "provider", "python:waft_testprovider", "-l", "bad", "--config-json",
                         str(config.with_suffix(".txt")), *lattice, home=tmp_path)
        assert bad.returncode == 1 and "is not JSON" in bad.stderr, bad.stderr
        missing = await waft("ctl", "start", "provider", "python:waft_testprovider", "-l", "bad", "--config-json",
                             str(tmp_path / "nosuch.json"), *lattice, home=tmp_path)
        assert missing.returncode == 1 and "cannot read --config-json" in missing.stderr, missing.stderr

        # what each provider was started with, as it tells it (Test.Config through a linked actor)
        pool = await host.start_actor(str(built_actor("hostcheck")))
        providers = {p["link_name"]: p["id"] for p in host.inventory()["providers"]}
        assert sorted(providers) == ["default", "inline"]
        for link_name, provider_id in providers.items():
            await host.put_link(LinkDefinition(pool.public_key, provider_id, "waft:test", link_name, {}))
        nc_rpc = await _rpc(nats_url, lattice_prefix, cluster)
        try:
            for link_name, expected in (("default", config.read_text()), ("inline", '{"greeting": "inline"}')):
                call = pack({"binding": link_name, "namespace": "waft:test", "operation": "Test.Config",
                             "payload": b""})
                answer = await _until_answered(nc_rpc[1], pool.public_key, call)
                assert answer.decode() == expected
        finally:
            await nc_rpc[0].close()


async def _rpc(url: str, prefix: str, cluster: KeyPair):  # type: ignore[no-untyped-def]
    import nats

    nc = await nats.connect(url)
    return nc, LatticeRpc(nc, LatticeConfig(prefix, cluster, "N" * 56))


async def _until_answered(rpc: LatticeRpc, actor_id: str, call: bytes) -> bytes:
    """The provider answers once its link has reached it: bounded retries, never a timing assertion."""
    from waft.lattice import RpcError

    last: Exception | None = None
    for _ in range(100):
        try:
            return await rpc.invoke(WasmCloudEntity.actor("M" + "A" * 55), WasmCloudEntity.actor(actor_id),
                                    "Test.Call", call, timeout=5)
        except RpcError as exc:
            last = exc
            await asyncio.sleep(0.1)
    raise AssertionError(f"the provider never answered: {last}")


async def test_call_takes_data_and_save_and_the_wasmcloud_cluster_seed(nats_url, lattice_prefix, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        pool = await host.start_actor(str(built_actor("echo")))
        lattice = ("--nats-url", nats_url, "-x", lattice_prefix, "-t", "10000")
        request = tmp_path / "request.json"
        request.write_text(json.dumps({"method": "GET", "path": "/from-a-file", "queryString": "", "header": {},
                                       "body": "hi"}))
        saved = tmp_path / "answer.bin"
        fresh = tmp_path / "fresh-home"  # no key store: the seed can only come from the variable
        done = ok(await waft("call", pool.public_key, "HttpServer.HandleRequest", "--data", str(request), "--save",
                             str(saved), *lattice, home=fresh, env={"WASMCLOUD_CLUSTER_SEED": cluster.seed}))
        assert f"saved to {saved}" in done.stdout
        response = msgpack.unpackb(saved.read_bytes(), raw=False)
        assert response["statusCode"] == 200 and json.loads(response["body"])["path"] == "/from-a-file"

        unsigned = await waft("call", pool.public_key, "HttpServer.HandleRequest", "--data", str(request),
                              *lattice, home=fresh)
        assert unsigned.returncode == 1 and "needs the lattice's cluster seed" in unsigned.stderr, unsigned.stderr
        both = await waft("call", pool.public_key, "HttpServer.HandleRequest", "{}", "--data", str(request),
                          *lattice, home=fresh, env={"WASMCLOUD_CLUSTER_SEED": cluster.seed})
        assert both.returncode == 1 and "not both" in both.stderr


def test_registry_credentials_and_pull_digest(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"waft:{bcrypt.hashpw(b's3cret', bcrypt.gensalt(rounds=4)).decode()}\n")
    echo = built_actor("echo")
    with docker_registry(tmp_path / "registry", htpasswd=htpasswd) as registry:
        ref = f"{registry}/waft/echo:0.1.0"
        denied = waft_sync("reg", "push", ref, str(echo), "--insecure", home=tmp_path / "h1")
        assert denied.returncode == 1 and "UNAUTHORIZED" in denied.stderr, denied.stderr
        assert "the registry wants credentials" in denied.stderr
        pushed = json.loads(ok(waft_sync("reg", "push", ref, str(echo), "--insecure", "-u", "waft", "-p", "s3cret",
                                         "-o", "json", home=tmp_path / "h1")).stdout)

        wash_env = {"WASH_REG_USER": "waft", "WASH_REG_PASSWORD": "s3cret"}
        assert waft_sync("reg", "pull", ref, "--insecure", home=tmp_path / "h2").returncode == 1  # no credentials
        wrong = tmp_path / "wrong.wasm"
        refused = waft_sync("reg", "pull", ref, "--insecure", "-d", "sha256:" + "0" * 64, "--destination",
                            str(wrong), home=tmp_path / "h2", env=wash_env)
        assert refused.returncode == 1 and f"has digest {pushed['digest']}" in refused.stderr, refused.stderr
        assert not wrong.exists()  # a digest that differs writes nothing
        right = tmp_path / "pulled.wasm"
        ok(waft_sync("reg", "pull", ref, "--insecure", "--digest", pushed["digest"], "--destination", str(right),
                     home=tmp_path / "h2", env=wash_env))
        assert right.read_bytes() == echo.read_bytes()
