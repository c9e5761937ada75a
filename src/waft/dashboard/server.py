"""The dashboard's web server: the page, a JSON API over the control interface, a websocket, `/metrics`.

State flows one way: NATS events -> `LatticeState` -> websocket -> page. The page never polls; it
renders what the websocket pushes and sends commands (start, scale, stop, link) through the API,
which turns each into one control-interface request. The outcome comes back as lattice events.

Bound to a loopback address the dashboard can be read by the local user (requests whose `Host` names
another machine are refused, which defeats DNS rebinding), but every write (POST/PUT/PATCH/DELETE under
`/api`) wants the token too: any local process can reach loopback, and one such write starts a
provider, which is code execution. Bound elsewhere it wants the token on every request. The token is
`WAFT_DASHBOARD_TOKEN`, or one generated at start; the URL printed at start carries it, and opening
that URL moves it into an HttpOnly SameSite=Strict cookie, which the page's own requests then carry.
`open_writes=True` (or `WAFT_INSECURE_NO_AUTH=1`) keeps the old open loopback writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from waft.config import setting, without_credentials
from waft.ctl import CtlClient, CtlError
from waft.dashboard.metrics import AccessMetrics
from waft.dashboard.state import LatticeState
from waft.interfaces.httpserver import AccessRecord, BadAccessRecord
from waft.interfaces.mlinference import CONTRACT_ID as MLINFERENCE_CONTRACT
from waft.lattice import events as lattice_events
from waft.lattice import subjects
from waft.lattice.credentials import host_connect_options, insecure_no_auth, server_urls
from waft.lattice.events import Event, EventError, parse_event

log = logging.getLogger("waft.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_ENV = "WAFT_DASHBOARD_TOKEN"
TOKEN_COOKIE = "waft_dashboard_token"
OPEN_PATHS = frozenset({"/api/livez", "/api/readyz"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Debounces: state pushes coalesce for this long; a host's inventory is re-read this long after an event.
PUSH_DELAY_S = 0.05
REFRESH_DELAY_S = 0.25
CLIENT_QUEUE = 256
SEND_TIMEOUT_S = 5.0


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class DashboardConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    prefix: str = subjects.DEFAULT_PREFIX
    host: str = "127.0.0.1"
    port: int = 4000
    bindle_url: str | None = None  # default: $BINDLE_URL, then the local default
    token: str | None = None  # default: $WAFT_DASHBOARD_TOKEN, or generated when one is required
    public: bool | None = None  # None: decided from `host` (anything but loopback is public)
    ctl_timeout: float = 2.0
    #: Loopback writes without the token (None: only when `WAFT_INSECURE_NO_AUTH` is set).
    open_writes: bool | None = None

    def __post_init__(self) -> None:
        if self.public is None:
            self.public = not is_loopback(self.host)
        if self.open_writes is None:
            self.open_writes = insecure_no_auth()
        if self.public:
            self.open_writes = False
        if self.token is None:
            self.token = setting("dashboard_token") or None
        if self.token_wanted and not self.token:
            self.token = secrets.token_urlsafe(24)
            self.generated_token = True
        else:
            self.generated_token = False

    @property
    def token_required(self) -> bool:
        """Every request but the probes needs the token (a dashboard reachable from the network)."""
        return bool(self.public)

    @property
    def token_wanted(self) -> bool:
        """Some requests need the token: all of them when public, the writes on loopback."""
        return bool(self.public) or not self.open_writes


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _local_ref(ref: str) -> str:
    """A path that exists here is sent as an absolute path (the host's working directory differs)."""
    path = Path(ref).expanduser()
    with contextlib.suppress(OSError):
        if path.exists():
            return str(path.resolve())
    return ref


def _engine(names: list[str]) -> str:
    for name in names:
        lower = name.lower()
        for suffix, engine in ((".onnx", "onnx"), (".pb", "tensorflow"), (".tflite", "tflite"),
                               (".xml", "openvino")):
            if lower.endswith(suffix):
                return engine
    return ""


class Dashboard:
    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.state = LatticeState(config.prefix)
        self.metrics = AccessMetrics(self.state.snapshot)
        self.ctl: CtlClient | None = None
        self.nc: Any = None
        self.clients: dict[web.WebSocketResponse, asyncio.Queue[str | None]] = {}
        self._dirty = asyncio.Event()
        self._refresh = asyncio.Event()
        self._bindle_wanted = asyncio.Event()
        self._events: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)
        self.ready = False
        self.url = ""

    # ------------------------------------------------------------------ life cycle
    async def run(self, on_ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        self.nc = await self._connect()
        try:
            self.ctl = CtlClient(self.nc, self.config.prefix, self.config.ctl_timeout)
            await self.nc.subscribe(subjects.events(self.config.prefix), cb=self._on_event_msg)
            await self.nc.subscribe(subjects.access_log(self.config.prefix), cb=self._on_access_msg)
            await self._load()
            runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            try:
                site = web.TCPSite(runner, self.config.host, self.config.port)
                await site.start()
                port = runner.addresses[0][1] if runner.addresses else self.config.port
                shown = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
                self.url = f"http://{shown}:{port}/"
                if self.config.token_wanted:
                    self.url += f"?token={self.config.token}"
                    if self.config.generated_token and self.config.token_required:
                        print(f"dashboard token (set {TOKEN_ENV} to choose one): {self.config.token}",
                              file=sys.stderr, flush=True)
                self.ready = True
                log.info("dashboard at %s", self.url)
                async with asyncio.TaskGroup() as tasks:
                    loops = [tasks.create_task(self._event_loop()), tasks.create_task(self._push_loop()),
                             tasks.create_task(self._refresh_loop()), tasks.create_task(self._metrics_loop()),
                             tasks.create_task(self._bindle_loop())]
                    if on_ready:
                        on_ready(self.url)
                    await stop.wait()
                    for task in loops:
                        task.cancel()
            finally:
                self.ready = False
                await self._close_clients()
                await asyncio.wait_for(runner.cleanup(), 10)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)

    async def _connect(self) -> Any:
        async def reconnected() -> None:
            log.info("NATS connection back; reloading the lattice")
            with contextlib.suppress(CtlError, TimeoutError):
                await self._load()

        async def disconnected() -> None:
            self.state.load_error = "NATS connection lost; reconnecting"
            self._dirty.set()

        async def error(exc: Exception) -> None:
            log.debug("NATS: %s", exc)

        try:
            return await nats.connect(server_urls(self.config.nats_url), connect_timeout=5, max_reconnect_attempts=-1,
                                      reconnect_time_wait=1, reconnected_cb=reconnected,
                                      disconnected_cb=disconnected, error_cb=error,
                                      **host_connect_options(self.config.nats_url))
        except (nats.errors.Error, OSError) as exc:
            raise CtlError(f"cannot reach NATS at {without_credentials(self.config.nats_url)} ({type(exc).__name__}); "
                           "is the lattice up? (`waft up`)") from None

    async def _load(self) -> None:
        assert self.ctl is not None
        try:
            await asyncio.wait_for(self.state.load(self.ctl), 15)
        except (CtlError, TimeoutError) as exc:
            self.state.load_error = f"could not load the lattice: {exc}"
            log.warning("%s", self.state.load_error)
        self._bindle_wanted.set()
        self._dirty.set()

    async def _close_clients(self) -> None:
        for ws in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001, message=b"dashboard stopping"), 2)
        self.clients.clear()

    # ------------------------------------------------------------------ NATS inputs
    async def _on_event_msg(self, msg: Any) -> None:
        with contextlib.suppress(EventError, asyncio.QueueFull):
            self._events.put_nowait(parse_event(msg.data))

    async def _on_access_msg(self, msg: Any) -> None:
        """One record, or a batch of them (the httpserver provider sends a batch per interval)."""
        try:
            records, bad = AccessRecord.decode_many(msg.data)
        except BadAccessRecord:
            self.metrics.rejected.inc()
            return
        if bad:
            self.metrics.rejected.inc(bad)
        for record in records:
            self.metrics.record(record)

    async def _event_loop(self) -> None:
        while True:
            event = await self._events.get()
            try:
                logged = self.state.apply_event(event)
            except Exception:  # one odd event must not stop the dashboard
                log.exception("could not apply event %s", event.kind)
                continue
            if logged:
                self._broadcast({"type": "event", "event": self.state.events[-1]})
            if event.kind in (lattice_events.PROVIDER_STARTED, lattice_events.HEALTH_CHECK_PASSED) and \
                    (event.contract_id or MLINFERENCE_CONTRACT) == MLINFERENCE_CONTRACT:
                self._bindle_wanted.set()  # a model server came up: its models may be new
            if self.state.hosts_to_refresh:
                self._refresh.set()
            self._dirty.set()

    async def _push_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(PUSH_DELAY_S)
            self._dirty.clear()
            self._broadcast({"type": "state", "state": self.state.snapshot()})

    async def _refresh_loop(self) -> None:
        """Re-read the inventory of hosts that events marked, a moment after the burst of events."""
        assert self.ctl is not None
        while True:
            await self._refresh.wait()
            await asyncio.sleep(REFRESH_DELAY_S)
            self._refresh.clear()
            for host_id in list(self.state.hosts_to_refresh):
                self.state.hosts_to_refresh.discard(host_id)
                try:
                    await self.state.refresh_host(self.ctl, host_id)
                except CtlError as exc:
                    log.debug("inventory of %s: %s", host_id, exc)
            self._dirty.set()

    async def _metrics_loop(self) -> None:
        """Once a second while there is traffic in the window: the charts' new points."""
        while True:
            await asyncio.sleep(1.0)
            if self.metrics.changed or self.metrics.active():
                self.metrics.changed = False
                self._broadcast({"type": "metrics", "metrics": self.metrics.summary()})

    async def _bindle_loop(self) -> None:
        while True:
            await self._bindle_wanted.wait()
            self._bindle_wanted.clear()
            await self.load_bindle_models()
            self._dirty.set()

    async def load_bindle_models(self) -> None:
        from waft.bindle.client import BindleClient, BindleError

        base = (self.config.bindle_url or setting("bindle_url", also=("BINDLE_URL",)) or "").rstrip("/")
        if not base:
            from waft.bindle.client import default_url

            base = default_url().rstrip("/")
        base = base if base.endswith("/v1") else f"{base}/v1"
        try:
            async with BindleClient(base, read_timeout=5) as client:
                matches = await asyncio.wait_for(client.search(limit=200), 8)
        except (BindleError, TimeoutError, OSError, ValueError) as exc:
            self.state.set_bindle_models(self.state.bindle_models, f"bindle at {base}: {exc}")
            return
        models = []
        for inv in matches.invoices:
            labels = [p.label for p in inv.parcels]
            models.append({"name": inv.name, "version": inv.version, "id": f"{inv.name}/{inv.version}",
                           "size": sum(label.size for label in labels), "engine": _engine([x.name for x in labels]),
                           "description": inv.description or ""})
        self.state.set_bindle_models(models)

    # ------------------------------------------------------------------ websocket fan-out
    def _broadcast(self, message: dict[str, Any]) -> None:
        if not self.clients:
            return
        text = json.dumps(message, default=str)
        for ws, queue in list(self.clients.items()):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:  # a client that cannot keep up is dropped; it reconnects and reloads
                self.clients.pop(ws, None)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    def hello(self) -> dict[str, Any]:
        return {"type": "hello", "state": self.state.snapshot(), "events": self.state.recent_events(),
                "metrics": self.metrics.summary()}

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 16)
        await ws.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        queue.put_nowait(json.dumps(self.hello(), default=str))
        self.clients[ws] = queue

        async def writer() -> None:
            while (text := await queue.get()) is not None:
                await asyncio.wait_for(ws.send_str(text), SEND_TIMEOUT_S)
            await ws.close()

        try:
            async with asyncio.TaskGroup() as tasks:
                sender = tasks.create_task(writer())
                async for msg in ws:
                    if msg.type == WSMsgType.TEXT and msg.data == "hello":
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.put_nowait(json.dumps(self.hello(), default=str))
                sender.cancel()
        except* (ConnectionError, TimeoutError, RuntimeError):
            pass
        finally:
            self.clients.pop(ws, None)
        return ws

    # ------------------------------------------------------------------ HTTP
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1 << 20)
        app.router.add_get("/", self.index)
        app.router.add_static("/static/", STATIC, append_version=False)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/api/livez", self.livez)
        app.router.add_get("/api/readyz", self.readyz)
        app.router.add_get("/api/ws", self.websocket)
        app.router.add_get("/api/state", self.api(self._state))
        app.router.add_get("/api/claims/{id}", self.api(self._claims))
        app.router.add_post("/api/actors", self.api(self._start_actor))
        app.router.add_post("/api/actors/{id}/scale", self.api(self._scale_actor))
        app.router.add_post("/api/actors/{id}/stop", self.api(self._stop_actor))
        app.router.add_post("/api/providers", self.api(self._start_provider))
        app.router.add_post("/api/providers/{id}/stop", self.api(self._stop_provider))
        app.router.add_post("/api/links", self.api(self._put_link))
        app.router.add_post("/api/links/delete", self.api(self._delete_link))
        app.router.add_post("/api/models/refresh", self.api(self._refresh_models))
        return app

    def _token_ok(self, request: web.Request) -> bool:
        expected = (self.config.token or "").encode()
        auth = request.headers.get("Authorization", "")
        offered = [auth[7:] if auth.lower().startswith("bearer ") else "", request.query.get("token", ""),
                   request.cookies.get(TOKEN_COOKIE, "")]
        return bool(expected) and any(hmac.compare_digest(t.encode(), expected) for t in offered if t)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if not self.config.token_required:
            # Loopback only: a page on some other name that resolves here (DNS rebinding) is refused.
            if not is_loopback(urlsplit(f"//{request.host}").hostname or ""):
                return web.Response(status=403, text="dashboard is bound to loopback; use 127.0.0.1\n")
        if request.method != "GET" or request.path == "/api/ws":
            origin = request.headers.get("Origin")
            if origin and urlsplit(origin).netloc != request.host:
                return web.json_response({"error": "cross-origin request refused"}, status=403)
        write = request.method in WRITE_METHODS and request.path.startswith("/api/")
        needs_token = request.path not in OPEN_PATHS and (
            self.config.token_required or (write and self.config.token_wanted))
        offered = request.path == "/" and "token" in request.query
        if needs_token or offered:
            if not self._token_ok(request):
                return web.json_response({"error": f"token required: open the URL printed at start, or send "
                                                   f"'Authorization: Bearer <{TOKEN_ENV}>'"}, status=401)
            if offered:  # keep it in a cookie, out of the address bar
                response = web.HTTPSeeOther("/")
                response.set_cookie(TOKEN_COOKIE, request.query["token"], httponly=True, samesite="Strict",
                                    path="/")
                raise response
        return await handler(request)

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def prometheus(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        connected = bool(self.nc is not None and self.nc.is_connected)
        ok = self.ready and connected
        return web.json_response({"status": "ok" if ok else "not ready", "nats": connected}, status=200 if ok else 503)

    def api(self, handler: Callable[[web.Request, dict[str, Any]], Awaitable[Any]]
            ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            body: dict[str, Any] = {}
            if request.method == "POST" and request.can_read_body:
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"error": "body is not JSON"}, status=400)
                if not isinstance(body, dict):
                    return web.json_response({"error": "body must be a JSON object"}, status=400)
            try:
                result = await asyncio.wait_for(handler(request, body), 30)
            except ApiError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            except CtlError as exc:
                return web.json_response({"error": str(exc)}, status=502)
            except TimeoutError:
                return web.json_response({"error": "the lattice did not answer in time"}, status=504)
            return web.json_response({"ok": True, **(result or {})})

        return wrapped

    # ------------------------------------------------------------------ API handlers
    @property
    def _ctl(self) -> CtlClient:
        if self.ctl is None:
            raise ApiError("not connected to the lattice", 503)
        return self.ctl

    async def _host_for(self, body: dict[str, Any]) -> str:
        host_id = str(body.get("host_id") or "")
        if not host_id and not self.state.hosts:
            raise ApiError("no host is running on this lattice", 409)
        if host_id:
            return host_id
        return await self._ctl.choose_host(actor_ref=str(body.get("ref", "")), known=sorted(self.state.hosts))

    @staticmethod
    def _text(body: dict[str, Any], key: str, default: str | None = None, limit: int = 4096) -> str:
        value = body.get(key, default)
        if value is None or not isinstance(value, str | int) or len(str(value)) > limit:
            raise ApiError(f"missing or invalid '{key}'")
        return str(value).strip()

    @staticmethod
    def _count(body: dict[str, Any], default: int | None = None) -> int:
        value = body.get("count", default)
        try:
            count = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError("'count' must be a whole number") from None
        if not 0 <= count <= 10_000:
            raise ApiError("'count' must be between 0 and 10000")
        return count

    async def _state(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return self.hello()

    async def _claims(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        key = request.match_info["id"]
        if key not in self.state.claims:
            self.state.claims.update({c["sub"]: c for c in await self._ctl.get_claims() if c.get("sub")})
        if key not in self.state.claims:
            raise ApiError(f"no claims known for {key}", 404)
        return {"claims": self.state.claims[key]}

    async def _start_actor(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        ref = _local_ref(self._text(body, "ref"))
        if not ref:
            raise ApiError("give an OCI reference or a file path")
        host_id = await self._host_for({**body, "ref": ref})
        count = self._count(body, 1)
        await self._ctl.start_actor(host_id, ref, max(count, 1))
        return {"host_id": host_id, "ref": ref}

    async def _scale_actor(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        actor_id = request.match_info["id"]
        count = self._count(body)
        host_id = await self._host_for(body)
        actor = next((a for a in self.state.hosts.get(host_id, {}).get("actors", []) if a["id"] == actor_id), {})
        await self._ctl.scale_actor(host_id, actor_id, count, str(body.get("actor_ref") or actor.get("image_ref", "")))
        return {"host_id": host_id, "count": count}

    async def _stop_actor(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        count = self._count(body, 0)
        host_id = await self._host_for(body)
        await self._ctl.stop_actor(host_id, request.match_info["id"], count)
        return {"host_id": host_id}

    async def _start_provider(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        ref = _local_ref(self._text(body, "ref"))
        if not ref:
            raise ApiError("give python:<module>, a .par file path or an OCI reference")
        link_name = self._text(body, "link_name", "default") or "default"
        config = body.get("configuration") or ""
        if not isinstance(config, str):
            config = json.dumps(config)
        host_id = await self._host_for({**body, "ref": ref})
        await self._ctl.start_provider(host_id, ref, link_name, config)
        return {"host_id": host_id, "ref": ref}

    async def _stop_provider(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        host_id = await self._host_for(body)
        await self._ctl.stop_provider(host_id, request.match_info["id"],
                                      self._text(body, "link_name", "default") or "default",
                                      self._text(body, "contract_id", ""))
        return {"host_id": host_id}

    async def _put_link(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        values = body.get("values") or {}
        if isinstance(values, str):  # the washboard's KEY1=VAL1,KEY2=VAL2
            pairs = [p for p in values.split(",") if p.strip()]
            if any("=" not in p for p in pairs):
                raise ApiError("values must look like KEY1=VAL1,KEY2=VAL2")
            values = dict(p.strip().split("=", 1) for p in pairs)
        if not isinstance(values, dict):
            raise ApiError("'values' must be an object or KEY=VAL,… text")
        await self._ctl.put_link(self._text(body, "actor_id"), self._text(body, "provider_id"),
                                 self._text(body, "contract_id"),
                                 self._text(body, "link_name", "default") or "default",
                                 {str(k): str(v) for k, v in values.items()})
        return {}

    async def _delete_link(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        await self._ctl.delete_link(self._text(body, "actor_id"), self._text(body, "contract_id"),
                                    self._text(body, "link_name", "default") or "default")
        return {}

    async def _refresh_models(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        await self.load_bindle_models()
        self._dirty.set()
        return {"models": self.state.models(), "bindle_error": self.state.bindle_error}


async def serve_dashboard(nats_url: str, prefix: str = subjects.DEFAULT_PREFIX, host: str = "127.0.0.1",
                          port: int = 4000, *, on_ready: Callable[[str], None] | None = None,
                          stop: asyncio.Event | None = None, bindle_url: str | None = None,
                          token: str | None = None, public: bool | None = None,
                          open_writes: bool | None = None) -> None:
    """Serve the dashboard until `stop` is set; `on_ready` gets the URL to open (with the token if one is needed)."""
    config = DashboardConfig(nats_url=nats_url, prefix=prefix, host=host, port=port, bindle_url=bindle_url,
                             token=token, public=public, open_writes=open_writes)
    await Dashboard(config).run(on_ready=on_ready, stop=stop)
