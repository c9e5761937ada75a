"""Slow and large bodies must not hold the HTTP listener: a body that trickles is cut off by a read timeout
(408) while others are served, and the bytes of bodies held at once have a budget (503, Retry-After)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import msgpack
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "httpserver"))

from listener_support import listening

pytestmark = pytest.mark.timeout(60)


async def echo(payload: bytes, timeout: float) -> bytes:
    body = msgpack.unpackb(payload)["body"]
    return msgpack.packb({"statusCode": 200, "header": {}, "body": str(len(body)).encode()})


async def slow_client(port: int, declared: int, sent: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A request that declares `declared` bytes and sends `sent`, then waits."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"PUT /m/matches HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode() + sent)
    await writer.drain()
    return reader, writer


async def test_a_trickling_body_is_cut_off_and_others_are_served() -> None:
    async with listening(echo, body_timeout_ms="300") as listener:
        reader, writer = await slow_client(listener.port, 1000, b"x" * 10)
        async with aiohttp.ClientSession() as session:  # meanwhile an ordinary request is answered
            async with session.put(f"http://127.0.0.1:{listener.port}/m/matches", data=b"abc") as response:
                assert response.status == 200 and await response.read() == b"3"
        status = await asyncio.wait_for(reader.readline(), 10)
        assert b" 408 " in status, status
        rest = await asyncio.wait_for(reader.read(4096), 10)
        assert b"request body too slow" in rest
        writer.close()


async def test_bodies_in_flight_have_a_byte_budget() -> None:
    async with listening(echo, max_bodies_bytes="1000", body_timeout_ms="5000") as listener:
        reader, writer = await slow_client(listener.port, 800, b"x")  # holds 800 of the 1000
        await asyncio.sleep(0.2)
        assert listener.body_bytes == 800
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{listener.port}/m/matches"
            async with session.put(url, data=b"y" * 500) as response:
                assert response.status == 503 and response.headers["Retry-After"] == "1"
                assert "too many bytes in flight" in await response.text()
            async with session.put(url, data=b"y" * 150) as response:  # within what is left
                assert response.status == 200
            writer.write(b"x" * 799)  # the held body completes: its bytes are released
            await writer.drain()
            assert b" 200 " in await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            async with session.put(url, data=b"y" * 500) as response:
                assert response.status == 200
        assert listener.body_bytes == 0
