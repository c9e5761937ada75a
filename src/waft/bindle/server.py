"""The bindle v0.7.1-compatible HTTP API on aiohttp.

One catch-all route dispatches on the *raw* request path: v0.7.1 splits `_i` tails on `@` and `/`
without percent-decoding, and aiohttp's router would decode first (turning `%2e%2e` into `..` and
`a%2Fb` into `a/b`). Doing our own dispatch also reproduces warp's 404 (empty) and 405 answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web

from waft.bindle import wire
from waft.bindle.auth import BasicAuth, Decision, load_htpasswd
from waft.bindle.ids import BindleId, InvalidId, check_sha
from waft.bindle.invoice import Invoice, InvoiceError, label_to_dict
from waft.bindle.search import QueryOptions, QueryStringError, parse_bool, search
from waft.bindle.signing import (
    KeyRing,
    SecretKeyEntry,
    SignatureError,
    VerificationStrategy,
    load_or_create_host_key,
    sign_invoice,
)
from waft.bindle.storage import FileStore, NotFound, SizeMismatch, StoreError, TooLarge
from waft.config import setting

log = logging.getLogger(__name__)

DEFAULT_MAX_INVOICE_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_PARCEL_SIZE = 8 * 1024 * 1024 * 1024
DEFAULT_UPLOAD_IDLE_TIMEOUT = 300.0
READ_CHUNK = 256 * 1024

INVALID_PATH = "Invalid URL. Missing Bindle ID and/or parcel SHA"
INVALID_ID = "invalid ID given"


@dataclass(frozen=True)
class ServerConfig:
    """Every limit and path the server uses; `None` paths default to files inside `directory`."""

    directory: Path
    signing_keys: Path | None = None
    keyring: Path | None = None
    strategy: str = "GreedyVerification"
    htpasswd_file: Path | None = None
    max_invoice_size: int = DEFAULT_MAX_INVOICE_SIZE
    max_parcel_size: int = DEFAULT_MAX_PARCEL_SIZE
    #: Seconds an upload may go without receiving a byte before it is dropped (and its `.part`
    #: removed); without it a stalled client would hold the parcel's write lock forever.
    upload_idle_timeout: float = DEFAULT_UPLOAD_IDLE_TIMEOUT


class _State:
    """What handlers share; built once so a bad key file or htpasswd fails at startup, not per request."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = FileStore(config.directory)
        recovery = self.store.recover()
        if recovery.removed_parts or recovery.removed_dirs:
            log.warning("removed %d unfinished write(s) and %d incomplete director(ies) left by an "
                        "earlier run", recovery.removed_parts, recovery.removed_dirs)
        self.store.load_index()
        self.host_key: SecretKeyEntry = load_or_create_host_key(
            config.signing_keys or config.directory / "signing-keys.toml")
        self.keyring = KeyRing.load(config.keyring or config.directory / "keyring.toml")
        self.strategy = VerificationStrategy.parse(config.strategy)
        self.auth = BasicAuth(load_htpasswd(config.htpasswd_file)) if config.htpasswd_file else None


STATE = web.AppKey("bindle_state", _State)


def create_app(config: ServerConfig) -> web.Application:
    app = web.Application()
    app[STATE] = _State(config)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


Handler = Callable[[web.Request, _State, str], Awaitable[web.StreamResponse]]


async def _dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    path = request.raw_path.split("?", 1)[0]
    if path == "/healthz" or path.startswith("/healthz/"):
        return web.Response(text="OK")
    if not path.startswith("/v1/"):
        return web.Response(status=404)
    if state.auth is not None:
        decision = await state.auth.decide(request.method, request.headers.get("Authorization"))
        if decision is Decision.UNAUTHORIZED:
            return wire.error(401, "unauthorized")
        if decision is Decision.FORBIDDEN:
            return wire.error(403, "access denied")
    rest = path[len("/v1/"):]
    method = request.method
    try:
        if rest == "_q":
            return await _only(method, {"GET": _query}, request, state, "")
        if rest in ("_i", "_i/"):
            if method == "POST":
                return await _create_invoice(request, state)
            if method in ("GET", "HEAD", "DELETE"):
                return wire.error(400, f"{INVALID_ID}: a bindle ID should be NAME/VERSION")
            return wire.plain(405, "HTTP method not allowed")
        if rest.startswith("_i/"):
            return await _item(request, state, rest[len("_i/"):])
        if rest.startswith("_r/missing/"):
            return await _only(method, {"GET": _missing}, request, state, rest[len("_r/missing/"):])
        if rest == "login":
            return await _only(method, {"GET": _login}, request, state, "")
    except StoreError as exc:
        return wire.error(exc.status, exc.message)
    except InvalidId as exc:
        return wire.error(400, f"{INVALID_ID}: {exc}")
    except QueryStringError as exc:
        return wire.plain(400, f"Invalid query string: {exc}")
    except OSError:
        log.exception("storage failure on %s %s", method, path)
        return wire.error(500, "resource could not be loaded")
    return web.Response(status=404)


async def _only(method: str, handlers: dict[str, Handler], request: web.Request, state: _State,
                tail: str) -> web.StreamResponse:
    handler = handlers.get(method)
    if handler is None:
        return wire.plain(405, "HTTP method not allowed")
    return await handler(request, state, tail)


async def _item(request: web.Request, state: _State, tail: str) -> web.StreamResponse:
    """`/v1/_i/{id}` and `/v1/_i/{id}@{sha}`: one `@` piece is an invoice, two a parcel, more a 400."""
    method = request.method
    pieces = tail.split("@")
    if method == "DELETE":  # yank takes the whole tail as the id, so `id@sha` is an invalid id
        return await _yank(request, state, tail)
    if len(pieces) > 2:
        return wire.error(400, INVALID_PATH)
    if len(pieces) == 1:
        handlers: dict[str, Handler] = {"GET": _get_invoice, "HEAD": _get_invoice}
        if method == "POST":
            return wire.error(400, INVALID_PATH)
        return await _only(method, handlers, request, state, tail)
    return await _only(method, {"GET": _get_parcel, "HEAD": _get_parcel, "POST": _create_parcel},
                       request, state, tail)


def _query_pairs(request: web.Request) -> list[tuple[str, str]]:
    raw = request.raw_path.partition("?")[2]
    return parse_qsl(raw, keep_blank_values=True)


# ------------------------------------------------------------------------------------------ invoices

async def _create_invoice(request: web.Request, state: _State) -> web.StreamResponse:
    body = await _read_limited(request, state.config.max_invoice_size)
    ctype = request.headers.get("Content-Type")
    essence = ctype.split(";", 1)[0].strip().lower() if ctype is not None else None
    try:
        if essence == wire.TOML:
            invoice = Invoice.from_toml(body)
        elif essence is None or essence == wire.JSON:  # v0.7.1 takes JSON only with no Content-Type
            invoice = Invoice.from_json(body)
        else:
            return wire.error(400, f"Request body toml deserialize error: content-type is not TOML "
                                   f"(got {ctype!r}; send application/toml)")
    except InvoiceError as exc:
        return wire.error(400, f"Request body toml deserialize error: {exc}")
    BindleId.parse(str(invoice.id))  # the name rules that keep ids URL- and path-safe
    for parcel in invoice.parcels:
        try:
            check_sha(parcel.label.sha256)
        except InvalidId as exc:
            return wire.error(400, f"Request body toml deserialize error: {exc}")
    try:
        state.strategy.verify(invoice, state.keyring)
        signed = sign_invoice(invoice, state.host_key, "host")
    except SignatureError as exc:
        return wire.error(400, str(exc))
    missing = state.store.create_invoice(signed)
    data = {"invoice": signed.to_dict()}
    if missing:
        data["missing"] = [label_to_dict(label) for label in missing]
    json_data = {"invoice": data["invoice"], "missing": data.get("missing")}
    return wire.serialized(request, data, 202 if missing else 201, json_data=json_data)


async def _get_invoice(request: web.Request, state: _State, tail: str) -> web.StreamResponse:
    bid = BindleId.parse(tail)
    yanked = False
    for key, value in _query_pairs(request):
        if key == "yanked":
            yanked = parse_bool(value, key)
    invoice = state.store.get_invoice(bid, allow_yanked=yanked)
    return wire.serialized(request, invoice.to_dict())


async def _yank(request: web.Request, state: _State, tail: str) -> web.StreamResponse:
    state.store.yank_invoice(BindleId.parse(tail))
    return wire.serialized(request, {"message": "invoice yanked"})


async def _missing(request: web.Request, state: _State, tail: str) -> web.StreamResponse:
    invoice = state.store.get_invoice(BindleId.parse(tail))
    return wire.serialized(request, {"missing": [label_to_dict(label) for label in state.store.missing(invoice)]})


async def _query(request: web.Request, state: _State, _tail: str) -> web.StreamResponse:
    opts = QueryOptions.from_pairs(_query_pairs(request))
    return wire.serialized(request, search(state.store.index.values(), opts).to_dict())


async def _login(request: web.Request, state: _State, _tail: str) -> web.StreamResponse:
    if not any(key == "provider" for key, _ in _query_pairs(request)):
        return wire.plain(400, "Invalid query string: missing `provider`")
    return wire.error(400, "Error with auth request: OIDC login is not configured on this server")


# ------------------------------------------------------------------------------------------- parcels

def _parcel_target(state: _State, tail: str):
    id_text, sha = tail.split("@")
    bid = BindleId.parse(id_text)
    check_sha(sha)
    invoice = state.store.get_invoice(bid)
    label = invoice.label_for(sha)
    if label is None:
        raise _BadRequest(f"Parcel SHA {sha} does not exist in invoice {bid}")
    return bid, label


class _BadRequest(StoreError):
    status = 400


async def _get_parcel(request: web.Request, state: _State, tail: str) -> web.StreamResponse:
    _bid, label = _parcel_target(state, tail)
    path = state.store.parcel_file(label.sha256)
    if not path.is_file():
        raise NotFound()
    # Streams from disk in chunks; a large parcel is never held in memory.
    return web.FileResponse(path, chunk_size=READ_CHUNK, headers={"Content-Type": label.media_type})


async def _create_parcel(request: web.Request, state: _State, tail: str) -> web.StreamResponse:
    _bid, label = _parcel_target(state, tail)
    if state.store.has_parcel(label.sha256):
        return wire.error(409, "resource already exists")
    limit = state.config.max_parcel_size
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"parcel body of {length} bytes exceeds the server's limit of {limit} bytes "
                       "(raise it with --max-parcel-size)")
    if length is not None and length != label.size:
        raise SizeMismatch(f"parcel size does not match invoice: the label says {label.size} bytes, "
                           f"Content-Length is {length}")
    chunks = _idle_limited(request.content.iter_chunked(READ_CHUNK), state.config.upload_idle_timeout)
    await state.store.write_parcel(label, chunks, max_size=limit)
    return wire.serialized(request, {"message": "parcel created"})


class _Stalled(StoreError):
    status = 408


async def _idle_limited(chunks: AsyncIterator[bytes], idle: float) -> AsyncIterator[bytes]:
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _Stalled(f"upload stalled: no data for {idle:g} seconds") from None
        yield chunk


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"invoice body of {request.content_length} bytes exceeds the server's limit of "
                       f"{limit} bytes (raise it with --max-invoice-size)")
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"invoice body exceeds the server's limit of {limit} bytes "
                           "(raise it with --max-invoice-size)")
    return bytes(body)


# --------------------------------------------------------------------------------------------- serve

async def serve(config: ServerConfig, host: str, port: int, *,
                on_ready: Callable[[str], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or the task is cancelled); `on_ready` gets the base URL once bound."""
    runner = web.AppRunner(create_app(config), access_log=log if setting("bindle_access_log") else None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        if on_ready is not None:
            on_ready(f"http://{bound_host}:{bound_port}/v1/")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
