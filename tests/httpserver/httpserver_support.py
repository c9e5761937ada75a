"""Helpers for the httpserver tests: free ports, a host with the provider linked, polling, curl, tiny WAT actors."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import wasmtime
from waft_testing import built_actor, running_host, trusted_account

from waft.claims import KeyPair, Role, sign_actor
from waft.lattice.types import LinkDefinition

CONTRACT = "wasmcloud:httpserver"
PROVIDER_REF = "python:waft_httpserver"
#: Bounds for polling loops: generous, since a provider process starts in ~1 s on a quiet machine.
SERVE_WAIT_S = 20.0


def free_port() -> int:
    """A port nobody listens on right now (bound to 0 and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_serving(url: str, *, timeout: float = SERVE_WAIT_S) -> None:
    """Poll until an HTTP answer comes back (any status): the provider has taken the link."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except (aiohttp.ClientError, TimeoutError):
                if loop.time() > deadline:
                    raise AssertionError(f"nothing answered on {url} within {timeout} s") from None
                await asyncio.sleep(0.05)


async def wait_closed(url: str, *, timeout: float = SERVE_WAIT_S) -> None:
    """Poll until connections to `url` are refused: the listener is gone."""
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
            await asyncio.sleep(0.05)


@dataclass
class Served:
    """A host with the httpserver provider, an actor, and a link: everything a request needs."""

    host: object
    provider: object
    actor_id: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def link(self, actor_id: str, values: dict[str, str]) -> LinkDefinition:
        return LinkDefinition(actor_id, self.provider.public_key, CONTRACT, "default", values)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def serving(nats_url: str, prefix: str, actor: str | Path | None = None, *,
                  values: dict[str, str] | None = None, **host_config: object) -> AsyncIterator[Served]:
    """Host + provider + one linked actor (the echo actor unless named), answering on a fresh port."""
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=prefix, cluster_seed=cluster.seed, **host_config) as host:
        pool = await host.start_actor(str(actor or built_actor("echo")))
        provider = await host.start_provider(PROVIDER_REF)
        port = free_port()
        served = Served(host, provider, pool.public_key, port)
        await host.put_link(served.link(pool.public_key, {"address": f"127.0.0.1:{port}", **(values or {})}))
        await wait_serving(served.url)
        yield served


async def curl(*args: str, timeout: float = 60) -> tuple[int, bytes, str]:
    """Run curl without blocking the loop the host runs in; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec("curl", "-sS", *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out, err.decode(errors="replace")


WAT_LOOP = """(module (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (loop $spin (br $spin)) (i32.const 1)))"""
WAT_TRAP = """(module (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) unreachable))"""


def wat_actor(tmp_path: Path, name: str, wat: str) -> Path:
    """A signed waPC actor from WAT, allowed to receive HTTP requests."""
    module = wasmtime.wat2wasm(wat)
    signed = sign_actor(bytes(module), issuer=trusted_account(), subject=KeyPair.generate(Role.MODULE),
                        name=name, caps=[CONTRACT])
    path = tmp_path / f"{name}_s.wasm"
    path.write_bytes(signed)
    return path


def resigned_echo(tmp_path: Path, name: str) -> Path:
    """The echo actor under another module key: a second actor to link on a second port."""
    module = built_actor("echo", signed=False).read_bytes()
    signed = sign_actor(module, issuer=trusted_account(), subject=KeyPair.generate(Role.MODULE),
                        name=name, caps=[CONTRACT])
    path = tmp_path / f"{name}_s.wasm"
    path.write_bytes(signed)
    return path
