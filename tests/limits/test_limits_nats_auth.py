"""Issue 9 part 6b: the whole echo app runs on a NATS server that wants a user and password.

Host, httpserver provider (its HostData URL carries the credentials), `waft ctl` and the dashboard all
connect with `nats://user:password@host:port`; a client without them, or with a wrong password, is
refused by the server, and the host's `ping.hosts` answer does not hand the password out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from pathlib import Path

import aiohttp
import nats
import nats.errors
import pytest
from waft_testing import built_actor, run_waft, running_host

from waft.claims import KeyPair, Role
from waft.ctl import CtlClient
from waft.dashboard.server import serve_dashboard
from waft.embedded_nats import EmbeddedNats
from waft.lattice.types import LinkDefinition

pytestmark = pytest.mark.timeout(180)
USER, PASSWORD = "waft", "lattice-pass-42"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def refused(url: str) -> str:
    """Connect once, no retries; the error the server gave, or fail if it let the client in."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    with pytest.raises((nats.errors.Error, OSError)):
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3,
                                error_cb=on_error)
        await nc.close()
    return " ".join(str(e) for e in errors).lower()


async def get_until(session: aiohttp.ClientSession, url: str, *, timeout: float = 20) -> aiohttp.ClientResponse:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            response = await session.post(url, data=b"over authenticated nats")
            await response.read()
            return response
        except aiohttp.ClientError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def auth_nats():
    with EmbeddedNats(auth=(USER, PASSWORD)) as server:
        yield server


def test_credentials_must_survive_a_url():
    with pytest.raises(ValueError):
        EmbeddedNats(auth=("user", "p@ss:word"))
    with pytest.raises(ValueError):
        EmbeddedNats(auth=("", "x"))


async def test_unauthenticated_clients_are_refused(auth_nats):
    assert auth_nats.url == auth_nats.public_url.replace("://", f"://{USER}:{PASSWORD}@")
    assert "authorization" in await refused(auth_nats.public_url)
    assert "authorization" in await refused(auth_nats.public_url.replace("://", f"://{USER}:wrong@"))
    nc = await nats.connect(auth_nats.url)
    await nc.close()


async def test_echo_app_over_authenticated_nats(auth_nats, lattice_prefix):
    url = auth_nats.url
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        pool = await host.start_actor(str(built_actor("echo")))
        provider = await host.start_provider("python:waft_httpserver")  # connects with HostData's URL
        assert PASSWORD in host._host_data_for(provider).nats_url
        port = free_port()
        await host.put_link(LinkDefinition(pool.public_key, provider.public_key, "wasmcloud:httpserver", "default",
                                           {"address": f"127.0.0.1:{port}"}))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            response = await get_until(http, f"http://127.0.0.1:{port}/auth?x=1")
            assert response.status == 200
            echoed = json.loads(await response.read())
            assert echoed["path"] == "/auth" and base64.b64decode(echoed["body"]) == b"over authenticated nats"

        # the control interface: the library, and `waft ctl` as a user runs it
        async with CtlClient.connect(url, lattice_prefix) as ctl:
            hosts = await ctl.get_hosts()
            assert [h["id"] for h in hosts] == [host.host_id]
            assert PASSWORD not in json.dumps(hosts)  # ping.hosts shows where, never the password
            assert hosts[0]["rpc_host"] == auth_nats.public_url
        home = Path(os.environ["WAFT_HOME"])
        done = await asyncio.to_thread(run_waft, "ctl", "get", "hosts", "--nats-url", url,
                                       "--lattice-prefix", lattice_prefix, home=home)
        assert done.returncode == 0 and host.host_id in done.stdout, done.stderr
        anonymous = await asyncio.to_thread(run_waft, "ctl", "get", "hosts", "--nats-url", auth_nats.public_url,
                                            "--lattice-prefix", lattice_prefix, home=home)
        assert anonymous.returncode != 0

        # the dashboard
        stop = asyncio.Event()
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_dashboard(url, lattice_prefix, "127.0.0.1", 0, stop=stop,
                                                   on_ready=ready.set_result))
        try:
            dashboard = await asyncio.wait_for(asyncio.shield(ready), 20)
            async with aiohttp.ClientSession() as http, http.get(dashboard.split("?", 1)[0] + "api/state") as response:
                assert response.status == 200
                state = await response.json()
            assert host.host_id in json.dumps(state) and PASSWORD not in json.dumps(state)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 20)
