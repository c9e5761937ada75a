"""`waft up` and `waft host` find their lattice prefix as wash users expect: flag, then `WAFT_LATTICE_PREFIX`,
then wasmCloud's `WASMCLOUD_LATTICE_PREFIX`, then `default` — checked by asking each prefix who answers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from waft.config import setting
from waft.ctl import CtlClient
from waft.embedded_nats import EmbeddedNats

pytestmark = pytest.mark.timeout(240)


def test_the_settings_reader_order() -> None:
    env = {"WAFT_LATTICE_PREFIX": "waft", "WASMCLOUD_LATTICE_PREFIX": "wasmcloud"}
    assert setting("lattice_prefix", "default", flag="flag", wasmcloud="lattice_prefix", env=env) == "flag"
    assert setting("lattice_prefix", "default", wasmcloud="lattice_prefix", env=env) == "waft"
    assert setting("lattice_prefix", "default", wasmcloud="lattice_prefix",
                   env={"WASMCLOUD_LATTICE_PREFIX": "wasmcloud"}) == "wasmcloud"
    empty = {"WAFT_LATTICE_PREFIX": ""}
    assert setting("lattice_prefix", "default", wasmcloud="lattice_prefix", env=empty) == "default"
    before = dict(os.environ)
    setting("lattice_prefix", "default", wasmcloud="lattice_prefix")
    assert dict(os.environ) == before  # read, never written


@contextmanager
def waft_process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "waft", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


async def hosts_on(url: str, prefix: str, proc: subprocess.Popen[str], *, want: int) -> list[str]:
    """The host ids answering on `prefix`, once `want` of them do (or the process died)."""
    async with CtlClient.connect(url, prefix, timeout=1) as ctl:
        for _ in range(120):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            found = [h["id"] for h in await ctl.get_hosts(wait=0.5)]
            if len(found) >= want:
                return found
        return found


@pytest.mark.parametrize("command", ["host", "up"])
def test_wasmcloud_lattice_prefix_is_honoured(command: str, tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats", port=-1) as server:
        env = {k: v for k, v in os.environ.items() if k not in ("WAFT_LATTICE_PREFIX", "WASMCLOUD_LATTICE_PREFIX")}
        env.update(WAFT_HOME=str(tmp_path / "home"), WASMCLOUD_LATTICE_PREFIX="from-wasmcloud")
        args = (["host", "--nats-url", server.url] if command == "host"
                else ["up", "--nats-url", server.url, "--no-bindle", "--no-dashboard"])
        with waft_process(args, env) as proc:
            found = asyncio.run(hosts_on(server.url, "from-wasmcloud", proc, want=1))
            assert len(found) == 1
            assert asyncio.run(hosts_on(server.url, "default", proc, want=0)) == []
        # WAFT_ wins over WASMCLOUD_, and the flag over both.
        env["WAFT_LATTICE_PREFIX"] = "from-waft"
        with waft_process(args, env) as proc:
            assert len(asyncio.run(hosts_on(server.url, "from-waft", proc, want=1))) == 1
        with waft_process([*args, "-x", "from-flag"], env) as proc:
            assert len(asyncio.run(hosts_on(server.url, "from-flag", proc, want=1))) == 1
            assert asyncio.run(hosts_on(server.url, "from-waft", proc, want=0)) == []
