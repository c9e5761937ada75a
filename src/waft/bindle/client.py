"""Async client for a bindle v0.7.1 server (ours or the Rust one), with a local parcel cache.

The public surface is deliberately small because other parts build on it: the mlinference provider
calls `get_invoice` and `get_parcel`, `waft models push` calls `push`. Status codes map to exceptions
the way v0.7.1's client maps them (404/403 on an invoice GET is `InvoiceNotFound`: a yanked bindle is
as good as gone), so callers branch on types, never on numbers.

`SyncBindleClient` wraps the same methods for code that is not async (CLI helpers, scripts).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tomllib
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from yarl import URL

from waft.bindle.cache import ParcelCache
from waft.bindle.ids import BindleId, check_sha
from waft.bindle.invoice import Invoice, InvoiceError, Label, label_from_dict
from waft.bindle.search import Matches
from waft.bindle.signing import ConsumerPolicy, SignatureError
from waft.config import int_setting, setting
from waft.errors import WaftError

DEFAULT_URL = "http://127.0.0.1:8080/v1/"
#: Seconds a request may wait for a connection, and for each read (a stalled transfer fails; a slow,
#: steady 1 GB transfer does not, which a total deadline would break).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
CHUNK = 1 << 20
#: Transfers at least this large get a progress bar when progress is on.
PROGRESS_THRESHOLD = 8 << 20
#: The largest parcel this client downloads, as the server's default upload limit.
MAX_PARCEL_BYTES = 8 << 30
#: The largest invoice, search result or error body read (the server refuses invoices over 4 MiB).
MAX_RESPONSE_BYTES = 16 << 20

T = TypeVar("T")
Kind = Literal["invoice", "parcel", "other"]


# -------------------------------------------------------------------------------------------- errors

class BindleError(WaftError):
    """Any failure talking to the server; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InvoiceNotFound(BindleError):
    """404, or 403 for a yanked bindle (v0.7.1 treats both as not found)."""


class ParcelNotFound(BindleError):
    pass


class InvoiceAlreadyExists(BindleError):
    pass


class ParcelAlreadyExists(BindleError):
    pass


class Unauthorized(BindleError):
    """401 (bad credentials) or 403 `access denied` (anonymous write)."""


class InvalidRequest(BindleError):
    """Any other 4xx: the server's message says what was wrong."""


class ServerError(BindleError):
    """5xx, or the server could not be reached."""


class InvoiceRefused(BindleError):
    """An invoice whose signatures fail this client's policy (`signing.ConsumerPolicy`)."""


class InvoiceMismatch(BindleError):
    """`push` found the server already holding this id with other content: reusing it would serve other files."""


def max_parcel_bytes() -> int:
    """`WAFT_BINDLE_MAX_DOWNLOAD_BYTES`: a parcel whose label declares more is refused before it is fetched."""
    return int_setting("bindle_max_download_bytes", MAX_PARCEL_BYTES)


def max_response_bytes() -> int:
    return int_setting("bindle_max_response_bytes", MAX_RESPONSE_BYTES)


def default_url() -> str:
    """`WAFT_BINDLE_URL`, else bindle's `BINDLE_URL`, else the local server `waft up` starts."""
    return setting("bindle_url", DEFAULT_URL, also=("BINDLE_URL",)) or DEFAULT_URL


# ------------------------------------------------------------------------------------------- results

@dataclass(frozen=True)
class PushResult:
    invoice: Invoice
    created: bool  # False when the invoice already existed (409) and was reused
    uploaded: list[str] = field(default_factory=list)  # shas sent by this push
    missing: list[Label] = field(default_factory=list)  # still absent: no data was given for them


ParcelData = Path | str | bytes


class BindleClient:
    """`async with BindleClient(url) as client: inv = await client.get_invoice("identity_model/0.2.0")`."""

    def __init__(self, base_url: str | None = None, *, auth: tuple[str, str] | None = None,
                 cache_dir: Path | None = None, progress: bool = False,
                 read_timeout: float = READ_TIMEOUT, write_auth: tuple[str, str] | None = None,
                 policy: ConsumerPolicy | None = None) -> None:
        base = base_url or default_url()
        self.base_url = base if base.endswith("/") else base + "/"
        # A plain header (aiohttp's BasicAuth helper is deprecated); sent on every request, GET included.
        self._headers = {"Accept": "application/toml"}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        # `write_auth` goes only with what needs it (every method but GET): the credentials `waft up` stored
        # are then never what makes a read fail on a server that has other users.
        self._write_headers: dict[str, str] = {}
        if write_auth and not auth:
            token = base64.b64encode(f"{write_auth[0]}:{write_auth[1]}".encode()).decode("ascii")
            self._write_headers["Authorization"] = f"Basic {token}"
        self.cache = ParcelCache(cache_dir)
        self.policy = policy or ConsumerPolicy.from_settings()
        #: sha256 -> size, from every invoice this client read: how much each parcel may be.
        self._sizes: dict[str, int] = {}
        self.progress = progress
        self._timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT,
                                              sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BindleClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    def _url(self, path: str, query: Mapping[str, str] | None = None) -> URL:
        # Ids are checked URL-safe, so the path goes out verbatim (no requoting of `/` or `@`).
        url = URL(self.base_url + path, encoded=True)
        return url.with_query(query) if query else url

    async def _request(self, method: str, path: str, kind: Kind, *, query: Mapping[str, str] | None = None,
                       **kwargs: Any) -> tuple[int, bytes]:
        if method != "GET" and self._write_headers:
            kwargs["headers"] = {**kwargs.get("headers", {}), **self._write_headers}
        try:
            async with self._http().request(method, self._url(path, query), **kwargs) as resp:
                # A HEAD answer announces the resource's length but has no body to bound.
                body = b"" if method == "HEAD" else await _read_bounded(resp, max_response_bytes())
                _raise_for_status(resp.status, body, kind)
                return resp.status, body
        except aiohttp.ClientError as exc:
            raise ServerError(f"cannot reach the bindle server at {self.base_url} ({exc}); is it running? "
                              "set BINDLE_URL or --server") from None
        except TimeoutError:
            raise ServerError(f"the bindle server at {self.base_url} did not answer in time") from None

    # --------------------------------------------------------------------------------------- invoices
    async def get_invoice(self, bid: BindleId | str, *, yanked: bool = False) -> Invoice:
        """`yanked=True` also returns a yanked invoice (v0.7.1 `get_yanked_invoice`)."""
        bid = _id(bid)
        _, body = await self._request("GET", f"_i/{bid}", "invoice",
                                      query={"yanked": "true"} if yanked else None)
        invoice: Invoice = _decode(lambda: Invoice.from_toml(body))
        try:
            self.policy.check(invoice)
        except SignatureError as exc:
            raise InvoiceRefused(str(exc)) from None
        self._sizes.update({p.label.sha256.lower(): p.label.size for p in invoice.parcels})
        return invoice

    async def create_invoice(self, invoice: Invoice | str | bytes) -> tuple[Invoice, list[Label]]:
        """Returns the stored (host-signed) invoice and the labels whose parcels the server lacks."""
        text = invoice.to_toml() if isinstance(invoice, Invoice) else invoice
        data = text.encode("utf-8") if isinstance(text, str) else text
        _, body = await self._request("POST", "_i", "invoice", data=data,
                                      headers={"Content-Type": "application/toml"})
        doc = _decode(lambda: tomllib.loads(body.decode("utf-8")))
        return (_decode(lambda: Invoice.from_dict(doc["invoice"])),
                [_decode(lambda m=m: label_from_dict(m)) for m in doc.get("missing", [])])

    async def yank(self, bid: BindleId | str) -> None:
        await self._request("DELETE", f"_i/{_id(bid)}", "invoice")

    async def missing_parcels(self, bid: BindleId | str) -> list[Label]:
        _, body = await self._request("GET", f"_r/missing/{_id(bid)}", "invoice")
        doc = _decode(lambda: tomllib.loads(body.decode("utf-8")))
        return [_decode(lambda m=m: label_from_dict(m)) for m in doc.get("missing", [])]

    async def search(self, query: str = "", *, version: str | None = None, offset: int | None = None,
                     limit: int | None = None, strict: bool | None = None,
                     yanked: bool | None = None) -> Matches:
        params = {"query": query, "version": version, "offset": offset, "limit": limit,
                  "strict": strict, "yanked": yanked}
        encoded = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()
                   if v is not None}
        _, body = await self._request("GET", "_q", "other", query=encoded)
        return _decode(lambda: Matches.from_dict(tomllib.loads(body.decode("utf-8"))))

    # ---------------------------------------------------------------------------------------- parcels
    async def parcel_exists(self, bid: BindleId | str, sha: str) -> bool:
        try:
            await self._request("HEAD", f"_i/{_id(bid)}@{check_sha(sha)}", "parcel")
        except ParcelNotFound:
            return False
        return True

    async def upload_parcel(self, bid: BindleId | str, sha: str, data: ParcelData) -> None:
        """Stream a file (or send bytes); the server checks size, then sha256, and stores nothing on a
        mismatch. An already stored parcel raises `ParcelAlreadyExists` (v0.7.1 is not idempotent)."""
        path = f"_i/{_id(bid)}@{check_sha(sha)}"
        if isinstance(data, bytes):
            await self._request("POST", path, "parcel", data=data)
            return
        file = Path(data)
        size = (await asyncio.to_thread(file.stat)).st_size
        # An explicit Content-Length keeps the body unchunked, so the server can refuse oversize
        # uploads before reading them.
        await self._request("POST", path, "parcel", data=_read_file(file, self._bar(f"push {file.name}", size)),
                            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})

    async def get_parcel(self, bid: BindleId | str, sha: str, *, size: int | None = None) -> Path:
        """The parcel as a file in the local cache: downloaded (streamed, digest-checked) on a miss,
        re-hashed on a hit (a cached file that no longer matches is dropped and fetched again).

        The download stops at the size the parcel's label declares: `size`, else the label of an
        invoice this client already read, else the invoice is read first to learn it."""
        check_sha(sha)
        cached = await asyncio.to_thread(self.cache.get, sha)
        if cached is not None:
            return cached
        declared = size if size is not None else await self._declared_size(_id(bid), sha)
        if declared > max_parcel_bytes():
            raise BindleError(f"parcel {sha} is {declared} bytes, over the download limit of {max_parcel_bytes()} "
                              "(WAFT_BINDLE_MAX_DOWNLOAD_BYTES); nothing fetched")
        part = self.cache.part_file(sha)
        try:
            await self._download(f"_i/{_id(bid)}@{sha}", part, sha, declared)
            return self.cache.commit(part, sha)
        finally:
            part.unlink(missing_ok=True)

    async def _declared_size(self, bid: BindleId, sha: str) -> int:
        if sha.lower() not in self._sizes:
            await self.get_invoice(bid, yanked=True)
        try:
            return self._sizes[sha.lower()]
        except KeyError:
            raise ParcelNotFound(f"bindle {bid} has no parcel {sha}") from None

    async def read_parcel(self, bid: BindleId | str, sha: str) -> bytes:
        """Convenience for small parcels (metadata JSON): the bytes, via the cache."""
        path = await self.get_parcel(bid, sha)
        return await asyncio.to_thread(path.read_bytes)

    async def _download(self, path: str, dest: Path, sha: str, size: int) -> None:
        try:
            async with self._http().get(self._url(path), headers={"Accept": "*/*"}) as resp:
                if resp.status != 200:
                    _raise_for_status(resp.status, await _read_bounded(resp, max_response_bytes()), "parcel")
                if resp.content_length is not None and resp.content_length != size:
                    raise BindleError(f"the server announces {resp.content_length} bytes for parcel {sha}, whose "
                                      f"label says {size}; nothing cached")
                hasher = hashlib.sha256()
                received = 0
                with self._bar(f"pull {sha[:12]}", size) as advance, dest.open("wb") as fh:
                    # Read at most one byte past the label: enough to tell an overrun, never more.
                    while chunk := await resp.content.read(min(CHUNK, size + 1 - received)):
                        received += len(chunk)
                        if received > size:
                            raise BindleError(f"the server sent more than the {size} bytes the label of parcel "
                                              f"{sha} declares; nothing cached")
                        hasher.update(chunk)
                        await asyncio.to_thread(fh.write, chunk)
                        advance(len(chunk))
        except aiohttp.ClientError as exc:
            raise ServerError(f"download from {self.base_url} failed ({exc})") from None
        except TimeoutError:
            raise ServerError(f"download from {self.base_url} stalled") from None
        if received != size:
            raise BindleError(f"downloaded parcel {sha} has {received} bytes, its label says {size}; nothing cached")
        if hasher.hexdigest() != sha.lower():
            raise BindleError(f"downloaded parcel hashes to {hasher.hexdigest()}, not {sha}; nothing cached")

    def _bar(self, description: str, total: int | None) -> _ProgressBar:
        return transfer_bar(description, total, self.progress)

    # ------------------------------------------------------------------------------------------- push
    async def push(self, invoice: Invoice, parcels: Mapping[str, ParcelData]) -> PushResult:
        """Create the invoice (or reuse it if it exists) and upload only the parcels the server lacks;
        `parcels` maps sha256 -> file or bytes. This is `bindle push` without the standalone layout."""
        try:
            stored, missing = await self.create_invoice(invoice)
            created = True
        except InvoiceAlreadyExists:
            stored = await self.get_invoice(invoice.id)
            if differences := invoice_differences(stored, invoice):
                raise InvoiceMismatch(f"bindle {invoice.id} already exists on {self.base_url} with other content "
                                      f"({'; '.join(differences)}); an invoice is immutable: push a new version",
                                      409) from None
            missing = await self.missing_parcels(invoice.id)
            created = False
        uploaded, absent = [], []
        for label in missing:
            data = parcels.get(label.sha256)
            if data is None:
                absent.append(label)
                continue
            try:
                await self.upload_parcel(invoice.id, label.sha256, data)
                uploaded.append(label.sha256)
            except ParcelAlreadyExists:  # another push won the race; the content is the same
                pass
        return PushResult(stored, created, uploaded, absent)


def _content(invoice: Invoice) -> dict[str, Any]:
    """What an invoice says, without what a server adds to it (its signatures, the yank)."""
    doc = invoice.to_dict()
    for key in ("signature", "yanked", "yankedSignature"):
        doc.pop(key, None)
    return doc


def invoice_differences(stored: Invoice, local: Invoice) -> list[str]:
    """The top-level fields (parcels by sha) in which two invoices with one id differ; [] when the same."""
    a, b = _content(stored), _content(local)
    found = []
    for key in sorted(set(a) | set(b)):
        if key == "parcel":
            left = {p["label"]["sha256"]: p for p in a.get(key) or []}
            right = {p["label"]["sha256"]: p for p in b.get(key) or []}
            if only := sorted(set(left) ^ set(right)):
                found.append(f"parcels {', '.join(sha[:12] for sha in only)} are on one side only")
            elif left != right:
                found.append("parcel labels differ")
        elif a.get(key) != b.get(key):
            found.append(f"{key}: server {a.get(key)!r}, local {b.get(key)!r}")
    return found


# --------------------------------------------------------------------------------------- sync facade

class SyncBindleClient:
    """Blocking twin of BindleClient for code without an event loop; it owns a private loop."""

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self.client = BindleClient(base_url, **kwargs)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def __enter__(self) -> SyncBindleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.client.close())
            self._loop.close()

    def get_invoice(self, bid: BindleId | str, *, yanked: bool = False) -> Invoice:
        return self._run(self.client.get_invoice(bid, yanked=yanked))

    def create_invoice(self, invoice: Invoice | str | bytes) -> tuple[Invoice, list[Label]]:
        return self._run(self.client.create_invoice(invoice))

    def upload_parcel(self, bid: BindleId | str, sha: str, data: ParcelData) -> None:
        return self._run(self.client.upload_parcel(bid, sha, data))

    def get_parcel(self, bid: BindleId | str, sha: str, *, size: int | None = None) -> Path:
        return self._run(self.client.get_parcel(bid, sha, size=size))

    def missing_parcels(self, bid: BindleId | str) -> list[Label]:
        return self._run(self.client.missing_parcels(bid))

    def search(self, query: str = "", **kwargs: Any) -> Matches:
        return self._run(self.client.search(query, **kwargs))

    def yank(self, bid: BindleId | str) -> None:
        return self._run(self.client.yank(bid))

    def push(self, invoice: Invoice, parcels: Mapping[str, ParcelData]) -> PushResult:
        return self._run(self.client.push(invoice, parcels))


# ------------------------------------------------------------------------------------------- helpers

def _id(bid: BindleId | str) -> BindleId:
    return bid if isinstance(bid, BindleId) else BindleId.parse(bid)


def _decode(fn: Any) -> Any:
    try:
        return fn()
    except (InvoiceError, tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ServerError(f"the server sent a response this client cannot read: {exc}") from None


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """A response body, refused once it passes `limit` (announced or not), so a server cannot make the
    client buffer without end."""
    if resp.content_length is not None and resp.content_length > limit:
        raise ServerError(f"the server's answer is {resp.content_length} bytes, over the limit of {limit} "
                          "(WAFT_BINDLE_MAX_RESPONSE_BYTES)", resp.status)
    body = await resp.content.read(limit + 1)
    while len(body) <= limit and (more := await resp.content.read(limit + 1 - len(body))):
        body += more
    if len(body) > limit:
        raise ServerError(f"the server's answer is more than {limit} bytes (WAFT_BINDLE_MAX_RESPONSE_BYTES)",
                          resp.status)
    return body


def _error_text(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        return str(tomllib.loads(text)["error"])
    except (tomllib.TOMLDecodeError, KeyError):
        pass
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text or "(empty body)"


def _raise_for_status(status: int, body: bytes, kind: Kind) -> None:
    """v0.7.1's `unwrap_status`, with the server's message kept in every exception."""
    if status in (200, 201, 202):
        return
    message = f"HTTP {status}: {_error_text(body)}"
    if status == 401 or (status == 403 and _error_text(body) == "access denied"):
        raise Unauthorized(message + " (pass credentials with --http-user/--http-password)", status)
    if (status == 403 and _error_text(body) == "bindle is yanked") or (kind == "invoice" and status == 404):
        raise InvoiceNotFound(message, status)
    if kind == "parcel" and status == 404:
        raise ParcelNotFound(message, status)
    if status == 409:
        raise (InvoiceAlreadyExists if kind == "invoice" else ParcelAlreadyExists)(message, status)
    if status >= 500:
        raise ServerError(message, status)
    raise InvalidRequest(message, status)


def transfer_bar(description: str, total: int | None, show: bool) -> _ProgressBar:
    """The bar the client shows for its own transfers, for other downloads to look the same (`waft models
    fetch`): shown when `show` and `total` is known and at least PROGRESS_THRESHOLD bytes."""
    return _ProgressBar(description, total, show and total is not None and total >= PROGRESS_THRESHOLD)


class _ProgressBar:
    """A rich progress bar on stderr when `show`, else a no-op; yields an `advance(n)` callable."""

    def __init__(self, description: str, total: int | None, show: bool) -> None:
        self.description = description
        self.total = total
        self.show = show
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return lambda n: None
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total)
        progress, task = self._progress, self._task
        return lambda n: progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


async def _read_file(path: Path, bar: _ProgressBar) -> AsyncIterator[bytes]:
    with bar as advance, path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            advance(len(chunk))
            yield chunk
