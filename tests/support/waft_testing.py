"""Helpers the test modules share: a running host in the test's event loop, and the built actors.

They live here rather than in conftest.py because several test folders have a conftest of their
own, and `from conftest import …` would pick whichever was imported last.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
        subprocess.run([sys.executable, str(ROOT / "actors" / "build.py")], check=True)
    return path
