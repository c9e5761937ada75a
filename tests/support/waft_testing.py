"""Helpers the test modules share: a running host in the test's event loop, and the built actors.

They live here rather than in conftest.py because several test folders have a conftest of their
own, and `from conftest import …` would pick whichever was imported last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
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


def trusted_account() -> object:
    """A fresh account key the suite's hosts trust, through `waft keys trust`'s own store (not by turning the
    trust policy off): tests that sign with throwaway keys still run under the default policy."""
    from waft.claims import trust
    from waft.claims.keys import KeyPair, Role

    account = KeyPair.generate(Role.ACCOUNT)
    trust.trust(account.public_key)
    return account


def built_issuers() -> list[str]:
    """The issuers of the actors already built in build/actors (signed by whoever's key store built them)."""
    from waft.claims import inspect_actor

    found = set()
    for path in sorted((ROOT / "build" / "actors").glob("*_s.wasm")):
        with contextlib.suppress(Exception):  # a half-written or foreign file is not our concern here
            found.add(inspect_actor(path.read_bytes()).issuer)
    return sorted(found)


def built_actor(name: str, signed: bool = True) -> Path:
    """A built actor from build/actors; built on demand so a bare `pytest` works too."""
    path = ROOT / "build" / "actors" / (f"{name}_s.wasm" if signed else f"{name}.wasm")
    if not path.exists():
        subprocess.run([sys.executable, str(ROOT / "actors" / "build.py")], check=True)
    return path


@contextlib.contextmanager
def docker_registry(root: Path, *, htpasswd: Path | None = None):
    """A real OCI registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1:<free port>.

    With `htpasswd` (bcrypt entries) it asks for Basic credentials, and is ready once `GET /v2/` says 401.
    Storage lives under `root`; yields the `127.0.0.1:PORT` address once `GET /v2/` answers 200, and
    stops the process (SIGTERM, then SIGKILL) on exit. A missing binary fails loudly: `make test`
    installs it (`apt-get install -y docker-registry`).
    """
    import http.client
    import shutil
    import socket
    import time

    binary = shutil.which("docker-registry") or ("/usr/bin/docker-registry"
                                                 if Path("/usr/bin/docker-registry").exists() else None)
    if binary is None:
        raise RuntimeError("docker-registry is not installed: `make test` installs it "
                           "(apt-get update && apt-get install -y docker-registry)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root.mkdir(parents=True, exist_ok=True)
    config = root / "registry.yml"
    config.write_text(f"""version: 0.1
log: {{level: warn, fields: {{service: registry}}}}
storage:
  filesystem: {{rootdirectory: {root / 'data'}}}
  delete: {{enabled: true}}
  cache: {{blobdescriptor: inmemory}}
http:
  addr: 127.0.0.1:{port}
  secret: waft-test-{port}
  headers: {{X-Content-Type-Options: [nosniff]}}
""" + (f"auth: {{htpasswd: {{realm: waft-test, path: {htpasswd}}}}}\n" if htpasswd else ""))
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {process.returncode}: "
                                   f"{(root / 'registry.log').read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/v2/")
                if conn.getresponse().status == (401 if htpasswd else 200):
                    conn.close()
                    break
                conn.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not answer GET /v2/ within 30 s")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def run_waft(*args: str, home: Path, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m waft ARGS` as a user runs it, with its own $WAFT_HOME; output captured as text."""
    import os

    env = {**os.environ, "WAFT_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "waft", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


def echo_app_manifest(path: Path, name: str, port: int) -> Path:
    """A manifest of the echo actor behind the httpserver on `port` (what `waft up --app` tests serve)."""
    path.write_text(f"""
name: {name}
actors:
  - name: echo
    image: {built_actor("echo")}
providers:
  - name: http
    image: python:waft_httpserver
links:
  - actor: echo
    provider: http
    contract: wasmcloud:httpserver
    values: {{address: "127.0.0.1:{port}"}}
""")
    return path


#: Settings of the outer environment that would point a fresh `waft up` at someone else's lattice or loosen it.
OUTER_SETTINGS = ("BINDLE_URL", "WAFT_BINDLE_URL", "WAFT_NATS_URL", "WAFT_INSECURE_NO_AUTH", "WAFT_KEYS",
                  "WAFT_DASHBOARD_TOKEN")


@contextlib.contextmanager
def waft_up_process(home: Path, log: Path, *args: str, ready: tuple[str, ...] = ("lattice is up",),
                    stop_wait: float = 60, columns: int = 300) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """`waft up ARGS` in the foreground of a subprocess with its own WAFT_HOME, until its log shows every
    `ready` line; yields the URLs it printed and the environment it ran with. SIGTERM after, and it must
    exit 0. Polls the log (never times a step)."""
    env = {k: v for k, v in os.environ.items() if k not in OUTER_SETTINGS}
    env.update(WAFT_HOME=str(home), PYTHONUNBUFFERED="1", COLUMNS=str(columns))
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "waft", "up", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        urls: dict[str, str] = {}
        for _ in range(3000):
            text = log.read_text()
            if all(line in text for line in ready):
                urls = dict(re.findall(r"^\s*(nats|bindle|host|dashboard)\s+(\S+)\s*$", text, re.M))
                break
            assert proc.poll() is None, text[-3000:]
            time.sleep(0.1)
        assert urls, log.read_text()[-3000:]
        yield urls, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(stop_wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()[-3000:]
