"""Issue 7: actors and providers started by OCI reference serve HTTP; apps deploy from a registry; two hosts."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections import Counter
from pathlib import Path

import aiohttp
import msgpack
import nats
import pytest
from waft_testing import ROOT, running_host, trusted_account

from waft.app import Manifest, read_state, reconcile, status, undeploy
from waft.claims import KeyPair, Role
from waft.ctl import CtlClient
from waft.host.host import StartError
from waft.lattice import WasmCloudEntity
from waft.lattice.codec import pack
from waft.lattice.signing import sign_invocation
from waft.lattice.types import Invocation, InvocationResponse, LinkDefinition
from waft.oci import par as parlib

pytestmark = pytest.mark.timeout(240)
HTTP = "wasmcloud:httpserver"
SERVE_WAIT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def get_json(url: str, *, timeout: float = SERVE_WAIT_S) -> dict:
    """Poll `url` until it answers 200 (the provider has taken the link); its JSON body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    body = await response.read()
                    if response.status == 200:
                        return json.loads(body)
                    last = f"HTTP {response.status}: {body[:200]!r}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = repr(exc)
            if loop.time() > deadline:
                raise AssertionError(f"{url} did not answer 200 within {timeout} s (last: {last})")
            await asyncio.sleep(0.1)


async def wait_refused(url: str, *, timeout: float = SERVE_WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    await response.read()
            except aiohttp.ClientConnectorError:
                return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise AssertionError(f"{url} still answers after {timeout} s")
            await asyncio.sleep(0.1)


async def test_actor_and_provider_by_ref_serve_http(nats_url, lattice_prefix, registry, pushed, oci_home):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            allowed_insecure=[registry.address]) as host:
        pool = await host.start_actor(pushed["echo"], 2)
        assert pool.image_ref == pushed["echo"] and pool.count == 2
        provider = await host.start_provider(pushed["httpserver"])
        assert provider.contract_id == HTTP and provider.spec.name == "HTTP Server"
        assert provider.public_key.startswith("V") and provider.spec.claims["rev"] == "1"
        extracted = oci_home / "cache" / "par" / provider.public_key / "1"
        assert provider.spec.env["PYTHONPATH"].split(":")[0] == str(extracted)
        assert (extracted / "waft_httpserver" / "provider.py").is_file()
        port = free_port()
        await host.put_link(LinkDefinition(pool.public_key, provider.public_key, HTTP, "default",
                                           {"address": f"127.0.0.1:{port}"}))
        echoed = await get_json(f"http://127.0.0.1:{port}/from/oci?x=1")
        assert echoed["method"] == "GET" and echoed["path"] == "/from/oci" and echoed["queryString"] == "x=1"
        # the same provider archive cannot start twice on one link
        with pytest.raises(StartError, match="already running"):
            await host.start_provider(pushed["httpserver"])


async def test_host_refusals_by_ref(nats_url, lattice_prefix, registry, pushed, oci_home, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    async with running_host(**config) as strict:  # nothing allowed-insecure
        with pytest.raises(StartError, match="allowed-insecure list"):
            await strict.start_actor(pushed["echo"])
        with pytest.raises(StartError, match="allowed-insecure list"):
            await strict.start_provider(pushed["httpserver"])
        assert not strict.actors and not strict.providers.running
    async with running_host(**config, allowed_insecure=[registry.address]) as host:
        with pytest.raises(StartError, match="latest is refused"):
            await host.start_actor(f"{registry.address}/waft/echo:latest")
        with pytest.raises(StartError, match="latest is refused"):
            await host.start_provider(f"{registry.address}/waft/httpserver")
        with pytest.raises(StartError, match="not found in the registry"):
            await host.start_actor(registry.ref("echo", "0.0.404"))
        with pytest.raises(StartError, match="is an actor module, not a provider archive"):
            await host.start_provider(pushed["echo"])
        # provider archives from files: a changed target, a forged claim, a broken tarball
        good = parlib.create_par("waft_testprovider", capid="waft:test", vendor="waft", name="Test provider",
                                 issuer=trusted_account(), subject=KeyPair.generate(Role.SERVICE),
                                 source=ROOT / "tests" / "support")
        archive = parlib.load_par(good)
        altered = parlib.pack_archive(archive.token, {"py3-none-any": archive.targets["py3-none-any"] + b"\0"})
        forged = parlib.pack_archive(parlib.sign_provider(
            archive.targets, issuer=trusted_account(), subject=KeyPair.generate(Role.SERVICE),
            name="x", capid="waft:test", vendor="v").rsplit(".", 1)[0] + "." + archive.token.rsplit(".", 1)[1],
            archive.targets)
        for name, data, why in (("altered.par", altered, "hash mismatch"), ("forged.par", forged, "Invalid signature"),
                                ("broken.par.gz", good[:300], "malformed provider archive")):
            path = tmp_path / name
            path.write_bytes(data)
            with pytest.raises(StartError, match=why):
                await host.start_provider(str(path))
        assert not host.providers.running
        # and the host still serves what is valid
        (tmp_path / "good.par").write_bytes(good)
        started = await host.start_provider(str(tmp_path / "good.par"))
        assert started.contract_id == "waft:test"


async def test_provider_runs_the_code_in_its_archive(nats_url, lattice_prefix, oci_home, tmp_path, monkeypatch):
    """The archive's copy of the package runs, not an installed one of the same name."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "tests" / "support" / "waft_testprovider", source / "waft_testprovider",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = source / "waft_testprovider" / "__init__.py"
    init.write_text(init.read_text() + "\nimport os as _os, pathlib as _pl\n"
                    "if _os.environ.get('WAFT_PAR_MARKER'):\n"
                    "    _pl.Path(_os.environ['WAFT_PAR_MARKER']).write_text(__file__)\n")
    marker = tmp_path / "marker"
    monkeypatch.setenv("WAFT_PAR_MARKER", str(marker))
    data = parlib.create_par("waft_testprovider", capid="waft:test", vendor="waft", name="Test provider",
                             issuer=trusted_account(), subject=KeyPair.generate(Role.SERVICE),
                             source=source, rev=3, compress=True)
    par_file = tmp_path / "testprovider.par.gz"
    par_file.write_bytes(data)
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        provider = await host.start_provider(str(par_file))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SERVE_WAIT_S
        while not marker.exists():
            assert loop.time() < deadline, "the provider never imported its package"
            await asyncio.sleep(0.05)
        ran_from = Path(marker.read_text())
        assert ran_from.is_relative_to(oci_home / "cache" / "par" / provider.public_key / "3"), ran_from


async def wait_hosts(ctl: CtlClient, expected: set[str], timeout: float = 15.0) -> None:
    """Poll `ping.hosts` until exactly `expected` answer (a host that just started may miss the first ping)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (seen := {h["id"] for h in await ctl.get_hosts()}) != expected:
        assert loop.time() < deadline, f"hosts answering: {seen}, expected {expected}"


def manifest(registry, pushed, *, count: int, port: int) -> Manifest:
    return Manifest.parse({
        "name": "echo-oci", "version": "0.1.0",
        "actors": [{"name": "echo", "image": pushed["echo"], "count": count}],
        "providers": [{"name": "httpserver", "image": pushed["httpserver"]}],
        "links": [{"actor": "echo", "provider": "httpserver", "contract": HTTP,
                   "values": {"address": f"127.0.0.1:{port}"}}]}, base=Path("/nonexistent"))


async def test_app_deploy_from_registry_reconciles_and_undeploys(nats_url, lattice_prefix, registry, pushed,
                                                                 oci_home):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            allowed_insecure=[registry.address]), \
            CtlClient.connect(nats_url, lattice_prefix, timeout=10) as ctl:
        first_port, second_port = free_port(), free_port()
        app = manifest(registry, pushed, count=2, port=first_port)
        assert app.actors[0].image == pushed["echo"]  # OCI refs are not taken for paths next to the manifest
        done = await reconcile(ctl, app)
        assert any("started 2 x actor echo" in line for line in done), done
        assert all(row["ok"] for row in await status(ctl, app)), await status(ctl, app)
        assert (await get_json(f"http://127.0.0.1:{first_port}/one"))["path"] == "/one"
        assert await reconcile(ctl, app) == []  # applying it again changes nothing

        edited = manifest(registry, pushed, count=3, port=second_port)
        done = await reconcile(ctl, edited)
        assert any("started 1 x actor echo" in line for line in done), done
        assert any(line.startswith("linked echo") for line in done), done
        rows = {row["name"]: row for row in await status(ctl, edited)}
        assert rows["echo"]["running"] == 3 and rows["httpserver"]["ok"]
        assert (await get_json(f"http://127.0.0.1:{second_port}/two"))["path"] == "/two"
        await wait_refused(f"http://127.0.0.1:{first_port}/one")
        links = await ctl.get_links()
        assert [ln["values"] for ln in links] == [{"address": f"127.0.0.1:{second_port}"}]

        await undeploy(ctl, edited)
        state = await read_state(ctl)
        assert all(not inv.get("actors") and not inv.get("providers") for inv in state.inventories.values()), \
            state.inventories
        assert await ctl.get_links() == []
        await wait_refused(f"http://127.0.0.1:{second_port}/two")


async def test_second_host_joins_and_shares_the_load(nats_url, lattice_prefix, registry, pushed, oci_home):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                  allowed_insecure=[registry.address])
    async with running_host(**config) as first, CtlClient.connect(nats_url, lattice_prefix, timeout=10) as ctl:
        await wait_hosts(ctl, {first.host_id})
        async with running_host(**config) as second:
            await wait_hosts(ctl, {first.host_id, second.host_id})
            pool_a = await first.start_actor(pushed["echo"], 2)
            pool_b = await second.start_actor(pushed["echo"], 2)
            assert pool_a.public_key == pool_b.public_key
            owner = {i.instance_id: "a" for i in pool_a.instances} | {i.instance_id: "b" for i in pool_b.instances}
            nc = await nats.connect(nats_url)
            try:
                origin = WasmCloudEntity.provider("V" + "B" * 55, HTTP, "default")
                served: Counter[str] = Counter()

                async def one(i: int) -> None:
                    msg = pack({"method": "GET", "path": f"/{i}", "queryString": "", "header": {}, "body": b""})
                    inv = Invocation(origin=origin, target=WasmCloudEntity.actor(pool_a.public_key),
                                     operation="HttpServer.HandleRequest", msg=msg)
                    sign_invocation(inv, cluster)
                    reply = await nc.request(f"wasmbus.rpc.{lattice_prefix}.{pool_a.public_key}", inv.encode(),
                                             timeout=10)
                    response = InvocationResponse.decode(reply.data)
                    assert response.error is None, response.error
                    assert json.loads(msgpack.unpackb(response.msg)["body"])["path"] == f"/{i}"
                    served[owner[response.instance_id or ""]] += 1

                for batch in range(0, 100, 20):
                    await asyncio.gather(*(one(i) for i in range(batch, batch + 20)))
                assert sum(served.values()) == 100
                assert served["a"] > 5 and served["b"] > 5, served
            finally:
                await nc.close()
