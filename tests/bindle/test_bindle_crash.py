"""A real `python -m waft.bindle` process killed with SIGKILL in the middle of a parcel upload:
after a restart the store is consistent and the same upload succeeds."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from bindle_support import Bundle, FileSpec

STARTUP_TIMEOUT = 60  # a safety net only: nothing below depends on how fast anything is
SIZE = 8 << 20


def _payload() -> bytes:
    block = hashlib.sha512(b"waft crash test").digest()
    return (block * (SIZE // len(block) + 1))[:SIZE]


PAYLOAD = _payload()
BIG = Bundle("crash.example/model", "1.0.0", [FileSpec("model.onnx", "application/octet-stream", PAYLOAD, "model")])
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class ServerProcess:
    def __init__(self, directory: Path, home: Path) -> None:
        self.directory = directory
        self.home = home
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> ServerProcess:
        env = {**os.environ, "WAFT_HOME": str(self.home)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "waft.bindle", "--address", "127.0.0.1:0", "--directory", str(self.directory),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
        line = await asyncio.wait_for(self.proc.stdout.readline(), STARTUP_TIMEOUT)
        match = re.search(rb"(http://127\.0\.0\.1:\d+/v1/)", line)
        assert match, f"server did not announce its address: {line!r}"
        self.url = match.group(1).decode()
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                await self.kill()


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        await proc.stop()


async def test_sigkill_during_upload_then_restart(tmp_path: Path, processes: list[ServerProcess]):
    store = tmp_path / "store"
    first = await ServerProcess(store, tmp_path / "home").start()
    processes.append(first)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(first.url + "_i", data=BIG.toml().encode(),
                             headers={"Content-Type": "application/toml"}) as resp:
            assert resp.status == 202

    # Send the headers and half the body, then wait until the server has put bytes into the .part file.
    part = store / "parcels" / SHA / "parcel.dat.part"
    _reader, writer = await asyncio.open_connection("127.0.0.1", first.port)
    head = (f"POST /v1/_i/{BIG.id}@{SHA} HTTP/1.1\r\nHost: x\r\nContent-Length: {SIZE}\r\n\r\n").encode()
    writer.write(head + PAYLOAD[: SIZE // 2])
    await writer.drain()
    for _ in range(STARTUP_TIMEOUT * 20):
        if part.exists() and part.stat().st_size > 0:
            break
        await asyncio.sleep(0.05)
    assert part.exists() and part.stat().st_size > 0, "the upload never reached the disk"
    await first.kill()
    writer.close()
    assert not (store / "parcels" / SHA / "parcel.dat").exists()
    assert part.stat().st_size < SIZE  # the kill really was mid-upload

    second = await ServerProcess(store, tmp_path / "home").start()
    processes.append(second)
    parcel_url = f"{second.url}_i/{BIG.id}@{SHA}"
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.head(parcel_url) as resp:
            assert resp.status == 404
        async with http.get(f"{second.url}_r/missing/{BIG.id}", headers={"Accept": "application/json"}) as resp:
            assert [m["sha256"] for m in (await resp.json())["missing"]] == [SHA]
        leftovers = [p for p in store.rglob("*") if p.name.endswith(".part") or p.parent.name == SHA]
        assert leftovers == [] and not (store / "parcels" / SHA).exists()

        async with http.post(parcel_url, data=PAYLOAD) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(parcel_url) as resp:
            assert resp.status == 200
            digest = hashlib.sha256()
            async for chunk in resp.content.iter_chunked(1 << 16):
                digest.update(chunk)
        assert digest.hexdigest() == SHA
        async with http.get(f"{second.url}_r/missing/{BIG.id}", headers={"Accept": "application/json"}) as resp:
            assert (await resp.json())["missing"] == []
    assert (store / "parcels" / SHA / "parcel.dat").stat().st_size == SIZE
