"""Fixtures shared by the whole suite: a real nats-server, isolated $WAFT_HOME, running hosts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from waft.embedded_nats import EmbeddedNats

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keys and caches of the suite never touch the developer's ~/.waft (built actors keep theirs)."""
    home = tmp_path_factory.mktemp("waft-home")
    old = {k: os.environ.get(k) for k in ("WAFT_HOME", "PYTHONPATH")}
    os.environ["WAFT_HOME"] = str(home)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), old["PYTHONPATH"]]))
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    with EmbeddedNats() as server:
        yield server


@pytest.fixture()
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


@pytest.fixture()
def lattice_prefix(request: pytest.FixtureRequest) -> str:
    """A lattice of its own per test, so tests sharing one server never see each other."""
    name = "".join(c for c in request.node.name if c.isalnum())[:40]
    return f"t{name}{os.getpid()}"


@contextlib.asynccontextmanager
async def running_host(**config: object) -> AsyncIterator[object]:
    """Start a Host in this event loop; stop it and join all its tasks on exit."""
    from waft.host.host import Host, HostConfig

    host = Host(HostConfig(**config))  # type: ignore[arg-type]
    task = asyncio.create_task(host.run())
    try:
        await asyncio.wait_for(host.wait_ready(), 15)
        yield host
    finally:
        host.stop()
        await asyncio.wait_for(task, 30)


def built_actor(name: str, signed: bool = True) -> Path:
    """A built actor from build/actors; built on demand so a bare `pytest` works too."""
    path = ROOT / "build" / "actors" / (f"{name}_s.wasm" if signed else f"{name}.wasm")
    if not path.exists():
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "actors" / "build.py")], check=True)
    return path
