"""Issue 9 part 6a: an actor that imports WASI gets no filesystem, environment, clock, sleep or network.

tests/actors/wasiprobe imports `wasi_snapshot_preview1` on purpose (real actors import none of it) and
tries each door through libc; a real host runs it and every answer must be a refusal.
"""

from __future__ import annotations

import os

import nats
import pytest
import wasmtime
from waft_testing import built_actor, running_host

from waft.claims import KeyPair, Role
from waft.host.wapc import WASI_ENOTCAPABLE
from waft.lattice import LatticeConfig, LatticeRpc, WasmCloudEntity

pytestmark = pytest.mark.timeout(120)
CALLER = WasmCloudEntity.actor("M" + "A" * 55)
WASI_ENOENT, WASI_EBADF = 44, 8


def test_the_probe_really_imports_wasi():
    module = wasmtime.Module(wasmtime.Engine(), built_actor("wasiprobe").read_bytes())
    wasi = {imp.name for imp in module.imports if imp.module == "wasi_snapshot_preview1"}
    assert {"path_open", "environ_get", "clock_time_get", "poll_oneoff", "sock_accept", "fd_read"} <= wasi


async def test_host_refuses_every_wasi_door(nats_url, lattice_prefix, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("host file")
    monkeypatch.setenv("WAFT_PROBE_SECRET", "host secret")
    monkeypatch.chdir(tmp_path)  # a relative path would resolve here if the host preopened its cwd
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        pool = await host.start_actor(str(built_actor("wasiprobe")))
        nc = await nats.connect(nats_url)
        rpc = LatticeRpc(nc, LatticeConfig(lattice_prefix, cluster, "N" * 56))
        try:
            async def probe(operation: str, payload: bytes = b"") -> str:
                answer = await rpc.invoke(CALLER, WasmCloudEntity.actor(pool.public_key), operation, payload,
                                          timeout=10)
                return answer.decode()

            assert await probe("Probe.ReadFile", str(secret).encode()) == f"refused errno={WASI_ENOENT}"
            assert await probe("Probe.ReadFile", b"secret.txt") == f"refused errno={WASI_ENOENT}"
            assert await probe("Probe.ReadFile", b"/etc/passwd") == f"refused errno={WASI_ENOENT}"
            written = tmp_path / "written.txt"
            assert await probe("Probe.WriteFile", str(written).encode()) == f"refused errno={WASI_ENOENT}"
            assert not written.exists()
            assert await probe("Probe.ListDir", b"/") == f"refused errno={WASI_ENOENT}"
            assert await probe("Probe.ListDir", b".") == f"refused errno={WASI_ENOENT}"
            # no variable at all reaches the guest, the host's own included
            assert os.environ["WAFT_PROBE_SECRET"] == "host secret"
            assert await probe("Probe.Getenv", b"WAFT_PROBE_SECRET") == f"refused errno={WASI_ENOENT}"
            assert await probe("Probe.Clock") == f"refused errno={WASI_ENOTCAPABLE}"
            # an hour's nanosleep fails at once instead of holding a worker thread past the deadline
            assert (await probe("Probe.Sleep")).startswith("refused errno=")
            assert await probe("Probe.Accept") == f"refused errno={WASI_EBADF}"
            assert await probe("Probe.Stdin") == "refused errno=0"  # stdin is empty, not the host's
            # the instance survived all of it and still answers
            assert await probe("Probe.Clock") == f"refused errno={WASI_ENOTCAPABLE}"
        finally:
            await nc.close()
