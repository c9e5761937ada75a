"""`waft models push` and `waft models fetch` show a progress bar for a large transfer when stderr is a terminal,
and print nothing of the kind otherwise (a script or a log file gets no control sequences).

The CLI runs as a user runs it, in a subprocess whose stderr is a pseudo-terminal (or a pipe); the bindle
server and the download source run in the test's event loop. The bar is rich's, so on a terminal its text
(the transfer's name) and cursor-hiding sequence appear in what the terminal received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from waft.bindle.server import ServerConfig, create_app

pytestmark = pytest.mark.timeout(180)
HIDE_CURSOR = b"\x1b[?25l"
MODELS_DIR = Path(__file__).resolve().parents[2] / "build" / "models"


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def waft(*args: str, home: Path, terminal: bool) -> tuple[int, str, bytes]:
    """(exit code, stdout, what stderr received): stderr a pseudo-terminal of 120 columns, or a pipe."""
    env = {**os.environ, "WAFT_HOME": str(home), "COLUMNS": "120", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    received = bytearray()
    master = slave = None
    reader = None
    if terminal:
        master, slave = pty.openpty()

        def drain() -> None:  # the child blocks once the terminal's buffer is full: read as it writes
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    return
                if not chunk:
                    return
                received.extend(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waft", *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=slave if terminal else subprocess.PIPE, env=env)
    if slave is not None:
        os.close(slave)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if reader is not None:
        reader.join(30)
        assert master is not None
        os.close(master)
    return proc.returncode or 0, out.decode(), bytes(received) if terminal else err


async def test_push_shows_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    models_dir = MODELS_DIR
    parcel = models_dir / "effnetlite0" / "efficientnet-lite0.onnx"
    if not parcel.is_file():
        pytest.skip("build/models has no effnetlite0: run `make models`")
    assert parcel.stat().st_size >= 8 << 20  # above the bindle client's bar threshold
    for terminal in (True, False):
        server = create_app(ServerConfig(directory=tmp_path / f"bindle-{terminal}"))
        async with served(server) as base:
            rc, out, err = await waft("models", "push", "effnetlite0", "--bindle-url", base, "--models-dir",
                                      str(models_dir), home=tmp_path / "home", terminal=terminal)
        assert rc == 0 and "efficientnet-lite0/0.1.0" in out, (out, err)
        if terminal:
            assert b"push efficientnet-lite0.onnx" in err and HIDE_CURSOR in err, err[-2000:]
        else:
            assert err == b"", err


async def test_fetch_shows_a_bar_on_a_terminal_only(tmp_path: Path) -> None:
    """A 9 MiB download. Its bytes are not the zoo file, so the import refuses them after the download: the
    bar comes with the transfer, and the refusal is still one line."""
    body = os.urandom(9 << 20)

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/model.onnx", serve)
    async with served(app) as base:
        for terminal in (True, False):
            rc, _, err = await waft("models", "fetch", "mobilenetv27", "--url", f"{base}/model.onnx",
                                    home=tmp_path / "home", terminal=terminal)
            assert rc == 1, err[-2000:]
            if terminal:
                assert b"download mobilenetv2-7.onnx" in err and HIDE_CURSOR in err, err[-2000:]
            else:
                assert b"download mobilenetv2-7.onnx" not in err and HIDE_CURSOR not in err, err
                assert err.decode().count("\n") == 1 and err.startswith(b"error: "), err


def test_up_push_models_shows_a_bar_on_a_terminal(tmp_path: Path) -> None:
    """`waft up --push-models` in a terminal (as `make run` is): the same bar per large parcel while it pushes the
    built models to its own bindle server; stopped with SIGTERM once up, leaving nothing running."""
    if not (MODELS_DIR / "effnetlite0" / "efficientnet-lite0.onnx").is_file():
        pytest.skip("build/models has no effnetlite0: run `make models`")
    env = {**os.environ, "WAFT_HOME": str(tmp_path / "home"), "COLUMNS": "120", "TERM": "xterm",
           "WAFT_MODELS_DIR": str(MODELS_DIR)}
    for name in ("NO_COLOR", "BINDLE_URL", "WAFT_BINDLE_URL", "WAFT_NATS_URL"):
        env.pop(name, None)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "waft", "up", "--push-models", "--nats-port", "0",
                             "--bindle-address", "127.0.0.1:0", "--no-dashboard"], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    received = bytearray()
    try:
        for _ in range(1200):  # bounded polls of what the terminal received, never a timing assertion
            if b"lattice is up" in received or proc.poll() is not None:
                break
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    received.extend(os.read(master, 65536))
                except OSError:
                    break
        assert b"lattice is up" in received, bytes(received[-3000:])
        assert b"push efficientnet-lite0.onnx" in received and HIDE_CURSOR in received, bytes(received[-3000:])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # drain, or the child blocks writing its exit
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        os.close(master)
    assert proc.returncode == 0, bytes(received[-3000:])
