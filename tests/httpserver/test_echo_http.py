"""Issue 5 acceptance: real HTTP clients (aiohttp and curl) through the provider to the echo actor."""

from __future__ import annotations

import base64
import json
import os

import aiohttp
import pytest
from httpserver_support import curl, serving
from yarl import URL

pytestmark = pytest.mark.timeout(180)

METHODS_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")


def echoed(body: bytes) -> dict:
    data = json.loads(body)
    data["body"] = base64.b64decode(data["body"])
    return data


async def test_methods_headers_queries_and_bodies_with_aiohttp(nats_url, lattice_prefix):
    async with serving(nats_url, lattice_prefix) as served, aiohttp.ClientSession() as session:
        for method in ("GET", "OPTIONS", *METHODS_WITH_BODY):
            body = os.urandom(1000) if method in METHODS_WITH_BODY else b""
            headers = [("X-Multi", "one"), ("X-Multi", "two, three"), ("X-Single", "v")]
            url = URL(f"{served.url}/a/b%20c/?q=%2F%20x&q=2&empty=&u=%C3%A9", encoded=True)  # as typed
            async with session.request(method, url, data=body, headers=headers) as response:
                assert response.status == 200, await response.text()
                assert response.headers["Content-Type"] == "application/json"
                got = echoed(await response.read())
            assert got["method"] == method
            assert got["path"] == "/a/b%20c/"
            assert got["queryString"] == "q=%2F%20x&q=2&empty=&u=%C3%A9"
            assert got["header"]["x-multi"] == ["one", "two, three"]
            assert got["header"]["x-single"] == ["v"]
            assert got["body"] == body and got["bodyLength"] == len(body)

        async with session.head(f"{served.url}/head?x=1") as response:
            assert response.status == 200
            assert await response.read() == b""
            assert int(response.headers["Content-Length"]) > 0  # the GET body's length, as HEAD promises


@pytest.mark.parametrize("size", [0, 1024 * 1024, 15 * 1024 * 1024])
async def test_binary_bodies_come_back_exactly(nats_url, lattice_prefix, size):
    body = os.urandom(size)
    async with serving(nats_url, lattice_prefix) as served, aiohttp.ClientSession() as session:
        async with session.put(f"{served.url}/blob", data=body,
                               headers={"Content-Type": "application/octet-stream"}) as response:
            assert response.status == 200, (await response.read())[:300]
            got = echoed(await response.read())
    assert got["bodyLength"] == size
    assert got["body"] == body


async def test_curl_methods_and_binary_bodies(nats_url, lattice_prefix, tmp_path):
    async with serving(nats_url, lattice_prefix) as served:
        for size in (0, 1024 * 1024, 15 * 1024 * 1024):
            body = os.urandom(size)
            sent, received = tmp_path / f"in{size}", tmp_path / f"out{size}"
            sent.write_bytes(body)
            code, status, err = await curl("-X", "POST", "--data-binary", f"@{sent}", "-H", "X-A: 1", "-H", "X-A: 2",
                                           "-o", str(received), "-w", "%{http_code}",
                                           f"{served.url}/up/load?name=a%26b&x=%E2%9C%93")
            assert code == 0, err
            assert status == b"200", received.read_bytes()[:300]
            got = echoed(received.read_bytes())
            assert got["body"] == body and got["bodyLength"] == size
            assert got["header"]["x-a"] == ["1", "2"]
            assert got["queryString"] == "name=a%26b&x=%E2%9C%93" and got["path"] == "/up/load"
        for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
            code, out, err = await curl("-X", method, "--data-binary", "xyz", f"{served.url}/m")
            assert code == 0, err
            got = echoed(out)
            assert got["method"] == method and got["body"] == b"xyz"
        code, out, err = await curl("-I", f"{served.url}/m")
        assert code == 0, err
        assert out.startswith(b"HTTP/1.1 200") and b"\r\n\r\n" == out[-4:]
