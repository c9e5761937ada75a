"""One HTTP listener per link: every request becomes one `HttpServer.HandleRequest` of the linked actor.

The listener knows nothing of NATS: it is handed an `invoke(payload, timeout)` coroutine, so the
limits, error mapping, CORS and access log can be tested against a stand-in actor in-process, and
the provider only glues it to `call_actor`. Limits are answered before the actor is bothered:
oversized bodies get 413 (before they are read, when Content-Length or `Expect: 100-continue`
tells us), a full listener gets 503 at once rather than queueing without bound, and one client over its
own share gets 429 (`admission.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from waft.interfaces.httpserver import (
    HOP_BY_HOP,
    BadResponse,
    HttpResponse,
    decode_response,
    encode_request,
    error_body,
)
from waft.lattice.rpc import CHUNKED_EXTRA_TIMEOUT_S, RpcError
from waft_httpserver.accesslog import AccessEntry, log_access, publish_access
from waft_httpserver.admission import Admission, ClientLimits, Refused
from waft_httpserver.settings import ListenerSettings

log = logging.getLogger("waft.httpserver")

Invoke = Callable[[bytes, float], Awaitable[bytes]]
"""`invoke(HttpRequest msgpack, timeout_s)` -> HttpResponse msgpack; raises RpcError."""

#: Beyond the actor timeout, what a request may spend in the lattice's chunk store before we give up.
SAFETY_MARGIN_S = CHUNKED_EXTRA_TIMEOUT_S + 5
CLOSE_GRACE_S = 2.0


class ListenerError(Exception):
    """The listener could not start (address in use, bad TLS files); the message says which."""


class Listener:
    def __init__(self, actor_id: str, settings: ListenerSettings, invoke: Invoke) -> None:
        self.actor_id = actor_id
        self.settings = settings
        self._invoke = invoke
        self.in_flight = 0
        #: Body bytes reserved by requests being read or served (each its Content-Length, or the body
        #: limit when it sends none), against `max_bodies_bytes`.
        self.body_bytes = 0
        self.served = 0
        self.admission = Admission(ClientLimits(
            settings.max_client_concurrent, settings.max_client_bodies_bytes, settings.max_client_active,
            settings.max_client_actor_ms_per_s / 1000, settings.max_client_actor_burst_ms / 1000,
            settings.max_client_wait_ms / 1000))
        self.port = settings.port
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        scheme = "https" if self.settings.tls else "http"
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"{scheme}://{host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        ssl_context = self._ssl_context()  # before anything is opened: bad TLS files leak nothing
        app = web.Application(client_max_size=self.settings.max_body_bytes, handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", self._handle, expect_handler=self._expect)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_GRACE_S)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = "already in use" if exc.errno == 98 else (exc.strerror or str(exc))
            raise ListenerError(f"cannot listen on {self.settings.address}: {reason} (errno {exc.errno})") from None
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:  # port 0 asks the OS for one; report the real one
            self.port = sockets[0].getsockname()[1]

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.settings.cert_file or "", self.settings.priv_key_file or "")
        except (OSError, ssl.SSLError) as exc:
            raise ListenerError(f"cannot load the TLS certificate or key: {exc}") from None
        return context

    async def close(self) -> None:
        """Stop accepting, give requests in flight a short grace, then drop them."""
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runner.cleanup(), CLOSE_GRACE_S + 3)

    # ------------------------------------------------------------------ requests
    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """Refuse an announced oversized body before the client sends it (curl asks for bodies > 1 MiB)."""
        length = request.content_length or 0
        if length > self.settings.max_body_bytes:
            response = self._too_large(length)
            self._log(request, response, "body too large", time.perf_counter())
            return response
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim response is not part of the body count
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        response, error = await self._respond(request)
        self._log(request, response, error, started)
        return response

    def _log(self, request: web.Request, response: web.Response, error: str, started: float) -> None:
        self.served += 1
        length = 0 if request.method == "HEAD" else len(response.body or b"")  # type: ignore[arg-type]
        entry = AccessEntry(method=request.method, path=request.raw_path, status=response.status, bytes=length,
                            ms=(time.perf_counter() - started) * 1000, remote=request.remote or "",
                            listener=self.address, actor=self.actor_id, error=error)
        publish_access(entry)  # the dashboard's metrics, whether or not the log is on
        if self.settings.access_log:
            log_access(entry, self.settings.log_format)

    async def _respond(self, request: web.Request) -> tuple[web.Response, str]:
        """The response, and the error behind it (for the log) when there was one."""
        cors = self._cors_headers(request)
        if cors is None:
            return _error(403, "origin not allowed", f"CORS does not allow origin {request.headers['Origin']!r}")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return self._preflight(cors), ""
        if self.in_flight >= self.settings.max_concurrent:
            response, error = _error(503, "too many requests", f"this listener already serves "
                                     f"{self.settings.max_concurrent} requests (max_concurrent); retry shortly")
            response.headers["Retry-After"] = "1"
            return response, error
        client = request.remote or ""
        self.in_flight += 1
        try:
            with self.admission.request(client):
                response, error = await self._call_actor(request, client)
        except Refused as exc:
            response, error = _error(429, exc.error, exc.detail)
            response.headers["Retry-After"] = str(exc.retry_after)
        finally:
            self.in_flight -= 1
        response.headers.extend(cors)
        return response, error

    async def _call_actor(self, request: web.Request, client: str) -> tuple[web.Response, str]:
        if (request.content_length or 0) > self.settings.max_body_bytes:
            return self._too_large(request.content_length or 0), "body too large"
        reserved = request.content_length if request.content_length is not None else (
            self.settings.max_body_bytes if request.body_exists else 0)
        if reserved and self.body_bytes + reserved > self.settings.max_bodies_bytes:
            response, error = _error(503, "too many bytes in flight", f"this listener already holds {self.body_bytes} "
                                     f"bytes of request bodies (max_bodies_bytes {self.settings.max_bodies_bytes}); "
                                     "retry shortly")
            response.headers["Retry-After"] = "1"
            return response, error
        with self.admission.body(client, reserved):
            self.body_bytes += reserved
            try:
                return await self._read_and_call(request, client)
            finally:
                self.body_bytes -= reserved

    async def _read_and_call(self, request: web.Request, client: str) -> tuple[web.Response, str]:
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(None), "body too large"
        except TimeoutError:
            return _error(408, "request body too slow", f"the body did not arrive within "
                          f"{self.settings.body_timeout_s:g} s (link value body_timeout_ms or "
                          "WAFT_HTTP_BODY_TIMEOUT_MS)")
        path, _, query = request.raw_path.partition("?")
        payload = encode_request(request.method, path, query, request.headers.items(), body)
        timeout = self.settings.timeout_s
        try:
            async with asyncio.timeout(timeout + SAFETY_MARGIN_S), self.admission.at_actor(client):
                answer = await self._invoke(payload, timeout)
        except RpcError as exc:
            if exc.no_responders:
                return _error(503, "actor not running", f"actor {self.actor_id} is not running: {exc}")
            if exc.connection_lost:
                response, error = _error(503, "lattice connection lost", str(exc))
                response.headers["Retry-After"] = "1"
                return response, error
            if exc.timeout:
                return _error(504, "actor timed out", f"actor {self.actor_id} did not answer within {timeout:g} s")
            return _error(500, "actor error", str(exc))
        except TimeoutError:
            return _error(504, "actor timed out", f"actor {self.actor_id} did not answer within {timeout:g} s")
        try:
            reply = decode_response(answer)
        except BadResponse as exc:
            return _error(500, "invalid response from actor", str(exc))
        return _to_aiohttp(reply), ""

    def _too_large(self, length: int | None) -> web.Response:
        limit = self.settings.max_body_bytes
        sent = f"{length} bytes" if length is not None else "more"
        return web.Response(status=413, content_type="application/json",
                            body=error_body("request body too large", f"{sent} sent; the limit is {limit} bytes "
                                            "(link value max_body_bytes or WAFT_HTTP_MAX_BODY_BYTES)"))

    # ------------------------------------------------------------------ CORS
    def _cors_headers(self, request: web.Request) -> CIMultiDict[str] | None:
        """Headers to add for a cross-origin request; None when its origin is not allowed."""
        origin = request.headers.get("Origin")
        headers: CIMultiDict[str] = CIMultiDict()
        if origin is None:
            return headers
        allowed = self.settings.cors.allowed_origins
        if allowed and origin.rstrip("/") not in allowed:
            return None
        headers["Access-Control-Allow-Origin"] = origin if allowed else "*"
        if allowed:
            headers["Vary"] = "Origin"
        if self.settings.cors.exposed_headers:
            headers["Access-Control-Expose-Headers"] = ", ".join(self.settings.cors.exposed_headers)
        return headers

    def _preflight(self, cors: CIMultiDict[str]) -> web.Response:
        settings = self.settings.cors
        cors["Access-Control-Allow-Methods"] = ", ".join(settings.allowed_methods)
        cors["Access-Control-Allow-Headers"] = ", ".join(settings.allowed_headers)
        cors["Access-Control-Max-Age"] = str(settings.max_age_secs)
        return web.Response(status=204, headers=cors)


def _error(status: int, error: str, detail: str) -> tuple[web.Response, str]:
    return web.Response(status=status, content_type="application/json", body=error_body(error, detail)), detail


def _to_aiohttp(reply: HttpResponse) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, values in reply.header.items():
        if name.lower() in HOP_BY_HOP:
            continue
        for value in values:
            headers.add(name, value)
    response = web.Response(status=reply.status, headers=headers, body=reply.body)
    if "Content-Type" not in headers and not reply.body:
        response.headers.pop("Content-Type", None)
    return response
