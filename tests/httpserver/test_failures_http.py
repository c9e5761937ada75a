"""Issue 5 acceptance: limits and failures end to end, each answered with a JSON error naming the cause."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import aiohttp
import pytest
from httpserver_support import (
    WAT_LOOP,
    WAT_TRAP,
    curl,
    free_port,
    resigned_echo,
    serving,
    wait_closed,
    wait_serving,
    wat_actor,
)

from waft.host.wapc import Limits

pytestmark = pytest.mark.timeout(180)


async def json_error(response: aiohttp.ClientResponse) -> dict:
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(await response.read())
    assert set(data) == {"error", "detail"} and data["error"] and data["detail"], data
    return data


async def test_body_limit_from_link_value(nats_url, lattice_prefix):
    async with serving(nats_url, lattice_prefix, values={"MAX_BODY_BYTES": "1000"}) as served, \
            aiohttp.ClientSession() as session:
        async with session.post(served.url, data=b"x" * 1000) as response:
            assert response.status == 200
        async with session.post(served.url, data=b"x" * 1001) as response:
            assert response.status == 413
            assert "1000 bytes" in (await json_error(response))["detail"]

        async def chunked():  # no Content-Length: the limit is enforced while reading
            for _ in range(4):
                yield b"y" * 400

        async with session.post(served.url, data=chunked()) as response:
            assert response.status == 413
            await json_error(response)


async def test_default_body_limit_with_curl(nats_url, lattice_prefix, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (20 * 1024 * 1024 + 1))
    async with serving(nats_url, lattice_prefix) as served:
        code, out, err = await curl("--data-binary", f"@{big}", "-w", "\n%{http_code}", served.url)
    assert code == 0, err
    body, _, status = out.rpartition(b"\n")
    assert status == b"413"
    assert json.loads(body)["error"] == "request body too large"


async def test_actor_past_the_timeout_gets_504(nats_url, lattice_prefix, tmp_path):
    looping = wat_actor(tmp_path, "looping", WAT_LOOP)
    async with serving(nats_url, lattice_prefix, looping, values={"timeout_ms": "300"},
                       limits=Limits(deadline_ms=3000)) as served, aiohttp.ClientSession() as session:
        async with session.get(f"{served.url}/spin") as response:
            assert response.status == 504
            assert "0.3 s" in (await json_error(response))["detail"]


async def test_trapping_actor_gets_500_naming_the_trap(nats_url, lattice_prefix, tmp_path):
    trapping = wat_actor(tmp_path, "trapping", WAT_TRAP)
    async with serving(nats_url, lattice_prefix, trapping) as served, aiohttp.ClientSession() as session:
        async with session.post(f"{served.url}/boom", data=b"x") as response:
            assert response.status == 500
            error = await json_error(response)
    assert error["error"] == "actor error"
    assert "trap" in error["detail"] and "unreachable" in error["detail"], error


async def test_stopped_actor_gets_503(nats_url, lattice_prefix):
    async with serving(nats_url, lattice_prefix) as served, aiohttp.ClientSession() as session:
        async with session.get(served.url) as response:
            assert response.status == 200
        assert await served.host.stop_actor(served.actor_id) == 1
        async with session.get(served.url) as response:
            assert response.status == 503
            assert (await json_error(response))["error"] == "actor not running"


async def test_provider_killed_serves_the_same_port_again_within_5s(nats_url, lattice_prefix):
    async with serving(nats_url, lattice_prefix) as served, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        first_pid = served.provider.process.pid
        os.kill(first_pid, signal.SIGKILL)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        while True:
            try:
                async with session.get(f"{served.url}/again") as response:
                    if response.status == 200 and served.provider.process.pid != first_pid:
                        break  # answered by the restarted process, not the one dying
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert loop.time() - killed_at < 5, "the port was not served again within 5 s"
            await asyncio.sleep(0.05)
        assert loop.time() - killed_at < 5
        assert served.provider.process.pid != first_pid and served.provider.restarts == 1


async def test_two_links_two_ports_delete_closes_and_taken_port_is_reported(nats_url, lattice_prefix, tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        async with serving(nats_url, lattice_prefix) as served:
            host = served.host
            second = await host.start_actor(str(resigned_echo(tmp_path, "second")))
            third = await host.start_actor(str(resigned_echo(tmp_path, "third")))
            second_port = free_port()
            await host.put_link(served.link(second.public_key, {"ADDRESS": f"127.0.0.1:{second_port}"}))
            await host.put_link(served.link(third.public_key, {"port": str(taken)}))
            await wait_serving(f"http://127.0.0.1:{second_port}")

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not (await host.providers.check_health(served.provider) is False
                       and "already in use" in served.provider.health_message):
                assert loop.time() < deadline, served.provider.health_message
                await asyncio.sleep(0.1)
            assert f"127.0.0.1:{taken}" in served.provider.health_message

            async with aiohttp.ClientSession() as session:
                for port in (served.port, second_port):  # the other links keep serving
                    async with session.get(f"http://127.0.0.1:{port}/still") as response:
                        assert response.status == 200

            assert await host.delete_link(second.public_key, "wasmcloud:httpserver", "default")
            await wait_closed(f"http://127.0.0.1:{second_port}")
            await wait_serving(served.url)
    finally:
        blocker.close()
