"""`waft up`: the whole lattice from one command, and everything it started stopped on the way out.

Order, as the design fixes it: NATS (embedded unless a URL is given), the bindle model repository,
the host, the dashboard; then, when asked, the preloaded models are pushed and an application
manifest is deployed. All of it runs in one TaskGroup; Ctrl-C or SIGTERM unwinds it in reverse.
After a deploy, `up` waits (bounded) until the app's HTTP route answers and its model is ready, then prints
the line to try (`try: curl -T cat.jpg http://127.0.0.1:8078/effnetlite0/matches`).

Secure by default: the embedded NATS server gets nkey users with per-subject permissions
(`waft.lattice.credentials`: the host/CLI user may do anything, the provider user cannot send control
commands or write the lattice cache), the bindle server wants credentials for every write, and the
dashboard wants its token for every write. All of them are generated on first start and kept in
`$WAFT_HOME` (0600), where every part Waft starts, and every later `waft` command, finds them without a
flag. `--insecure-no-auth` (`WAFT_INSECURE_NO_AUTH=1`) starts them open, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from waft.bindle.auth import ensure_bindle_credentials
from waft.config import setting, waft_home
from waft.embedded_nats import ClusterOptions, EmbeddedNats, LeafRemote
from waft.errors import WaftError
from waft.lattice.credentials import authorization_config, ensure_credentials, insecure_no_auth, route_credentials

log = logging.getLogger("waft.up")


class UpError(WaftError):
    """The lattice cannot come up; the message says what to change."""


@dataclass
class UpConfig:
    nats_url: str | None = None
    nats_port: int = 4222
    prefix: str = "default"
    bindle_address: str | None = "127.0.0.1:8080"
    dashboard_address: str | None = "127.0.0.1:4000"
    app: Path | None = None
    push_models: bool = False
    app_ready_timeout_s: float = 120.0  # how long `up` waits for the app's HTTP route and models after deploy
    host_overrides: dict[str, object] = field(default_factory=dict)
    insecure_no_auth: bool = False  # True: NATS, bindle writes and dashboard writes open to anyone who reaches them
    nats_host: str = "127.0.0.1"  # where the embedded server listens for clients (0.0.0.0: every interface)
    server_name: str | None = None  # the embedded server's name; a cluster member needs one of its own
    cluster_name: str = "waft"
    cluster_listen: str | None = None  # HOST:PORT for peers' routes: makes the embedded server a cluster member
    routes: tuple[str, ...] = ()  # nats-route://HOST:PORT of the other members
    leaf_url: str | None = None  # nats-leaf://HOST:7422: the embedded server is a leaf node of that cluster
    leaf_credentials: Path | None = None
    leaf_listen: str | None = None  # HOST:PORT where leaf nodes connect in (they sign with the lattice host key)
    jetstream_wait_s: float = 300.0  # how long a cluster member waits for a majority to form


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UpError(f"address must be HOST:PORT, got {address!r}")
    return host or "127.0.0.1", int(port)


async def up(config: UpConfig, *, on_ready: Callable[[dict[str, str]], None] | None = None,
             stop: asyncio.Event | None = None) -> None:
    """Run the lattice until `stop` is set or the process is signalled."""
    from waft.host.host import Host, HostConfig

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    home = waft_home()
    secure = not insecure_no_auth(config.insecure_no_auth)
    nats_server: EmbeddedNats | None = None
    urls: dict[str, str] = {}
    try:
        if config.nats_url:
            nats_url = config.nats_url
        else:
            if config.nats_port and not _port_free(config.nats_host, config.nats_port):
                raise UpError(f"port {config.nats_port} is in use; to join the NATS server there, run "
                              f"`waft up --nats-url nats://{config.nats_host}:{config.nats_port}`")
            authorization = None
            credentials = ensure_credentials() if secure else None
            if credentials:
                authorization = authorization_config(credentials, [config.prefix])
            else:
                log.warning("NATS, bindle writes and dashboard writes are open to every local process "
                            "(--insecure-no-auth)")
            nats_server = _embedded_nats(config, home, authorization,
                                         route_credentials(credentials) if credentials else None)
            nats_url = await asyncio.to_thread(nats_server.start)
            if config.cluster_listen:
                await _wait_jetstream(nats_url, config.jetstream_wait_s)
        urls["nats"] = nats_url
        host_config = HostConfig.from_env(nats_url=nats_url, prefix=config.prefix, **config.host_overrides)
        host = Host(host_config.with_stored_cluster_key().with_stored_nats_credentials())
        bindle_auth = ensure_bindle_credentials(home) if secure and config.bindle_address else None
        async with asyncio.TaskGroup() as tasks:
            if config.bindle_address:
                urls["bindle"] = await _start_bindle(tasks, config.bindle_address, stop,
                                                     htpasswd=bindle_auth.htpasswd if bindle_auth else None)
                # Providers started by this host find the repository (unless the user named another).
                if not setting("bindle_url", also=("BINDLE_URL",)):
                    host_config.provider_env["BINDLE_URL"] = urls["bindle"]
            host_task = tasks.create_task(host.run())
            await host.wait_ready(30)
            urls["host"] = host.host_id
            if config.dashboard_address:
                url = await _start_dashboard(tasks, config.dashboard_address, nats_url, config.prefix, stop,
                                             open_writes=not secure)
                if url:
                    urls["dashboard"] = url
            if config.push_models and "bindle" in urls:
                try:
                    await _push_models(urls["bindle"], bindle_auth.pair if bindle_auth else None)
                except Exception as exc:
                    raise UpError(f"pushing the preloaded models failed: {exc} (did `make models` run?)") from exc
            try_line = None
            if config.app:
                try:
                    await _deploy(nats_url, config.prefix, config.app, host.host_id)
                except Exception as exc:
                    raise UpError(f"deploying {config.app} failed: {exc}") from exc
                try_line = await _wait_app_ready(config.app, config.app_ready_timeout_s)
            if on_ready:
                on_ready(urls)
            if try_line:
                print(try_line, flush=True)
            await stop.wait()
            host.stop()
            await host_task
    finally:
        if nats_server is not None:
            await asyncio.to_thread(nats_server.stop)


def _embedded_nats(config: UpConfig, home: Path, authorization: str | None,
                   route_auth: tuple[str, str] | None) -> EmbeddedNats:
    """The embedded server as `config` asks: alone, a cluster member (routes carry `route_auth`, which the
    members derive from the shared host key), or a leaf node of a remote cluster."""
    cluster = leaf = None
    try:
        if config.cluster_listen:
            cluster = ClusterOptions(config.cluster_name, config.cluster_listen, tuple(config.routes), route_auth)
        if config.leaf_url:
            leaf = LeafRemote(config.leaf_url, config.leaf_credentials)
        name = config.server_name or (f"{socket.gethostname()}-{config.cluster_listen.replace(':', '-')}"
                                      .replace(".", "-") if cluster else None)
        # port 0 lets the kernel pick (nats-server spells that -1)
        leaf_user = ensure_credentials().host.public_key if config.leaf_listen and route_auth else None
        return EmbeddedNats(home / "nats", host=config.nats_host, port=config.nats_port or -1,
                            authorization=authorization, server_name=name, cluster=cluster, leaf=leaf,
                            leaf_listen=config.leaf_listen, leaf_user=leaf_user)
    except ValueError as exc:
        raise UpError(str(exc)) from None


async def _wait_jetstream(nats_url: str, timeout_s: float) -> None:
    import nats

    from waft.lattice.credentials import host_connect_options, server_urls
    from waft.lattice.replication import wait_jetstream

    log.info("waiting for the NATS cluster's JetStream (a majority of members must be up)")
    nc = await nats.connect(server_urls(nats_url), **host_connect_options(nats_url))
    try:
        await wait_jetstream(nc, timeout_s)
    except TimeoutError:
        raise UpError(f"the NATS cluster's JetStream did not form within {timeout_s:g} s: start the other "
                      "members (`waft up --cluster-listen ... --route ...` on each)") from None
    finally:
        await nc.close()


async def _start_bindle(tasks: asyncio.TaskGroup, address: str, stop: asyncio.Event, *,
                        htpasswd: Path | None = None) -> str:
    from waft.bindle.serve import ServerConfig, serve  # type: ignore[attr-defined]

    host, port = _split(address)
    if port and not _port_free(host, port):
        raise UpError(f"bindle port {port} is in use; pass --bindle-address HOST:PORT or --no-bindle")
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    config = ServerConfig(directory=waft_home() / "bindle", htpasswd_file=htpasswd)
    tasks.create_task(serve(config, host, port, on_ready=ready.set_result, stop=stop))
    return await asyncio.wait_for(ready, 30)


async def _start_dashboard(tasks: asyncio.TaskGroup, address: str, nats_url: str, prefix: str,
                           stop: asyncio.Event, *, open_writes: bool = False) -> str | None:
    try:
        from waft.dashboard.server import serve_dashboard
    except ImportError:
        log.warning("dashboard not available in this build")
        return None
    host, port = _split(address)
    if port and not _port_free(host, port):
        raise UpError(f"dashboard port {port} is in use; pass --dashboard-address HOST:PORT or --no-dashboard")
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    tasks.create_task(serve_dashboard(nats_url, prefix, host, port, on_ready=ready.set_result, stop=stop,
                                      open_writes=open_writes))
    return await asyncio.wait_for(ready, 30)


async def _push_models(bindle_url: str, auth: tuple[str, str] | None) -> None:
    """Upload every locally built or imported model; a re-push uploads nothing."""
    from waft.models.store import push_local

    # a bar per large parcel when `up` runs in a terminal (a detached lattice logs to a file: none)
    for result in await push_local(bindle_url, auth=auth, progress=sys.stderr.isatty()):
        log.info("model %s: invoice %s, %d parcel(s) uploaded", result["route"], result["invoice"],
                 result["uploaded"])


async def _deploy(nats_url: str, prefix: str, manifest_path: Path, host_id: str) -> None:
    """Onto `up`'s own host, stored and marked deployed in the apps store as `waft app deploy FILE` does, so
    the lattice's reconciler restores what the app loses later (a stopped actor, a provider that gave up)."""
    from waft.app import Manifest
    from waft.app_store import AppStore
    from waft.ctl import CtlClient
    from waft.reconciler import deploy_stored

    manifest = Manifest.load(manifest_path)
    async with CtlClient.connect(nats_url, prefix, timeout=10) as ctl:
        store = await AppStore.open(ctl.nc, prefix)
        before = await store.get(manifest.name)
        await store.put(manifest, source=str(manifest.source), replace=True)
        owner = f"waft up on {socket.gethostname()} (pid {os.getpid()})"
        for line in await deploy_stored(ctl, store, manifest, before, owner=owner, host_id=host_id):
            log.info("%s: %s", manifest.name, line)


@dataclass(frozen=True)
class AppHttp:
    """Where a deployed app answers HTTP, and the model it is best tried with (None: not an ML app)."""

    url: str
    model: str | None

    @property
    def ready_path(self) -> str:
        return f"/v2/models/{self.model}/ready" if self.model else "/healthz"

    @property
    def try_line(self) -> str:
        if self.model:
            return f"try: curl -T cat.jpg {self.url}/{self.model}/matches"
        return f"try: curl {self.url}/"


def app_http(manifest_path: Path) -> AppHttp | None:
    """The app's httpserver address (0.0.0.0 and [::] read as loopback) and, when the same actor has an
    mlinference link, its model to try (the registry's default classifier when served, else the first of its zoo)."""
    from waft.app import Manifest
    from waft.models import route_to_try
    from waft.provider.link_values import SettingsError, b64_json, json_object, lowercase_keys

    manifest = Manifest.load(manifest_path)
    for link in manifest.links:
        if link.contract != "wasmcloud:httpserver":
            continue
        try:
            values = lowercase_keys(link.values)
        except SettingsError:
            continue
        host, sep, port = values.get("address", "").rpartition(":")
        if not sep or not port.isdigit() or int(port) == 0:
            continue
        host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]", "::") else host
        models: list[str] = []
        for other in manifest.links:
            if other.actor != link.actor or other.contract != "wasmcloud:mlinference":
                continue
            try:
                ml = lowercase_keys(other.values)
                config = (json_object(ml["config_json"], "config_json") if "config_json" in ml
                          else b64_json(ml["config_b64"]) if "config_b64" in ml else {})
            except (SettingsError, KeyError):
                continue
            zoo = (config.get("models") or {}).get("zoo") if isinstance(config.get("models"), dict) else None
            models += list(zoo) if isinstance(zoo, dict) else []
        return AppHttp(f"http://{host}:{port}", route_to_try(models))
    return None


async def _wait_app_ready(manifest_path: Path, timeout_s: float, *, interval_s: float = 0.25) -> str | None:
    """After deploy: poll the app until its route answers 200 (the model's KServe ready route for an ML app,
    else /healthz, where any answer below 500 counts), bounded by `timeout_s`. Returns the `try:` line to print,
    or None when the app serves no HTTP. Never fails `up`: past the bound it logs what it last saw."""
    import aiohttp

    target = app_http(manifest_path)
    if target is None:
        return None
    url = target.url + target.ready_path
    log.info("waiting for %s (up to %.0f s)", url, timeout_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = "no answer"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(url) as response:
                    last = f"HTTP {response.status}: {(await response.text())[:200]}"
                    if response.status == 200 or (target.model is None and response.status < 500):
                        log.info("%s is ready", target.model or target.url)
                        return target.try_line
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if loop.time() >= deadline:
                log.warning("%s was not ready after %.0f s (last: %s); it may still be loading", url, timeout_s,
                            last)
                return target.try_line
            await asyncio.sleep(interval_s)


def pid_file() -> Path:
    return waft_home() / "up.pid"


def detach(argv: list[str]) -> int:
    """Start `waft up` again in the background, its output in $WAFT_HOME/up.log; return its pid."""
    import subprocess

    log_path = waft_home() / "up.log"
    # 0600 from the start: the log holds the dashboard URL, token included
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "waft", "up", *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file().write_text(str(child.pid))
    return child.pid
