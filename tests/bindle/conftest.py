"""Fixtures: servers on 127.0.0.1 port 0 over a fresh store, always stopped at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bindle_support import Harness, ThreadedServer

from waft.bindle.server import ServerConfig


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the developer's ~/.waft, BINDLE_* settings or cache."""
    monkeypatch.setenv("WAFT_HOME", str(tmp_path / "waft-home"))
    for name in ("BINDLE_URL", "BINDLE_HTTP_USER", "BINDLE_HTTP_PASSWORD", "BINDLE_DIRECTORY",
                 "BINDLE_KEYRING", "BINDLE_SIGNING_KEYS", "BINDLE_VERIFICATION_STRATEGY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    started: list[Harness] = []

    async def factory(**overrides: Any) -> Harness:
        overrides.setdefault("directory", tmp_path / f"store{len(started)}")
        harness = Harness(ServerConfig(**overrides))
        started.append(harness)
        return await harness.start()

    yield factory
    for harness in started:
        await harness.stop()


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[Harness]]) -> Harness:
    return await make_server()


@pytest.fixture
def threaded_server(tmp_path: Path) -> Iterator[Harness]:
    with ThreadedServer(ServerConfig(directory=tmp_path / "threaded-store")) as harness:
        yield harness
