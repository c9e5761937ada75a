"""Shared test helpers: fixture bindles modelled on the original model invoices, an in-process server
harness that counts requests, a raw-HTTP helper (for paths aiohttp's client would normalise), and a
server running in a thread (for the synchronous CLI and sync-client tests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from waft.bindle.server import ServerConfig, create_app

NETWORK_TIMEOUT = aiohttp.ClientTimeout(total=60)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FileSpec:
    name: str
    media_type: str
    data: bytes
    member_of: str | None = None

    @property
    def sha(self) -> str:
        return sha256(self.data)


@dataclass
class Bundle:
    """An invoice (as TOML text written the way the original repos wrote theirs) and its parcels."""

    name: str
    version: str
    files: list[FileSpec]
    groups: tuple[str, ...] = ()
    extra: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def parcels(self) -> dict[str, bytes]:
        return {f.sha: f.data for f in self.files}

    def toml(self) -> str:
        lines = ['bindleVersion = "1.0.0"', "", "[bindle]", f'name = "{self.name}"', f'version = "{self.version}"',
                 'authors = ["Waft tests <tests@example.com>"]', 'description = "test bindle"', "",
                 "[annotations]", 'myname = "myvalue"', ""]
        for group in self.groups:
            lines += ["[[group]]", f'name = "{group}"', 'satisfiedBy = "allOf"', "required = true", ""]
        for f in self.files:
            lines += ["[[parcel]]", f"label.sha256 = '{f.sha}'", f"label.mediaType = '{f.media_type}'",
                      f"label.name = '{f.name}'", f"label.size = {len(f.data)}"]
            if f.member_of:
                lines.append(f'conditions.memberOf = ["{f.member_of}"]')
            lines.append("")
        return "\n".join(lines) + self.extra


def _metadata(model_name: str, encoding: str) -> bytes:
    return json.dumps({"model_name": model_name, "graph_encoding": encoding, "execution_target": "cpu",
                       "tensor_type": "F32", "tensor_dimensions_in": [1, 4],
                       "tensor_dimensions_out": [1, 4]}).encode()


def model_bindle(name: str, version: str, model_file: str, encoding: str, payload: bytes) -> Bundle:
    return Bundle(name, version, [
        FileSpec(model_file, "application/octet-stream", payload, "model"),
        FileSpec(model_file.rsplit(".", 1)[0] + ".json", "application/json", _metadata(name, encoding), "metadata"),
    ], groups=("model", "metadata"))


IDENTITY = model_bindle("identity_model", "0.2.0", "identity_input_output.onnx", "onnx",
                        b"fake onnx: identity model bytes \x00\x01\x02")
PLUS3 = model_bindle("plus3", "0.1.0", "plus3.pb", "tensorflow", b"fake tensorflow graph: +3 \xff\xfe")
MOBILENET = model_bindle("mobilenetv2-7", "0.1.0", "mobilenetv2-7.onnx", "onnx", bytes(range(256)) * 64)

RED = FileSpec("isolinear_chip.txt", "text/plain", b"a red one")
GREEN = FileSpec("other.txt", "text/plain", b"a green one")
WARPCORE_V1 = Bundle("enterprise.com/warpcore", "1.0.0", [RED])
WARPCORE_V2 = Bundle("enterprise.com/warpcore", "2.0.0", [RED, GREEN])
CARGOBAY = Bundle("enterprise.com/cargobay", "1.0.0", [
    RED, FileSpec("barrel.txt", "text/plain", b"unstable plasma"),
    FileSpec("crate.txt", "text/plain", b"isolinear rods")])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Harness:
    """One server on 127.0.0.1:<free port> over a store directory, with a request log."""

    config: ServerConfig
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: (raw path, Content-Length, chunked?) of every request, to check how clients send bodies
    framing: list[tuple[str, int | None, bool]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0
    session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/"

    @property
    def root(self) -> Path:
        return self.config.directory

    async def start(self) -> Harness:
        app = create_app(self.config)
        log, framing = self.requests, self.framing

        @web.middleware
        async def count(request: web.Request, handler):
            log.append((request.method, request.raw_path))
            chunked = "chunked" in request.headers.get("Transfer-Encoding", "")
            framing.append((request.raw_path, request.content_length, chunked))
            return await handler(request)

        app.middlewares.append(count)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        self.session = aiohttp.ClientSession(timeout=NETWORK_TIMEOUT)
        return self

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def call(self, method: str, path: str, *, body: bytes | None = None,
                   headers: dict[str, str] | None = None) -> Reply:
        """A raw HTTP/1.1 exchange: the request line goes out byte for byte as given."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 30)
        try:
            head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
            hdrs = dict(headers or {})
            if body is not None and "Transfer-Encoding" not in hdrs:
                hdrs.setdefault("Content-Length", str(len(body)))
            head += [f"{k}: {v}" for k, v in hdrs.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), 60)
        finally:
            writer.close()
        return parse_reply(raw)

    async def post_invoice(self, bundle: Bundle | str, accept: str | None = None) -> Reply:
        text = bundle.toml() if isinstance(bundle, Bundle) else bundle
        headers = {"Content-Type": "application/toml"}
        if accept:
            headers["Accept"] = accept
        return await self.call("POST", "/v1/_i", body=text.encode(), headers=headers)

    async def upload(self, bundle: Bundle, sha: str, data: bytes | None = None) -> Reply:
        return await self.call("POST", f"/v1/_i/{bundle.id}@{sha}", body=bundle.parcels[sha] if data is None else data)

    def files(self) -> set[str]:
        """Every file under the store except the server's own key files."""
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
                and p.name not in ("signing-keys.toml", "keyring.toml")}

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Reply(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return bytes(out)


async def seed(harness: Harness, bundles: Iterable[Bundle], *, upload: bool = True) -> None:
    for bundle in bundles:
        reply = await harness.post_invoice(bundle)
        assert reply.status in (201, 202), reply.text
        if upload:
            for sha in bundle.parcels:
                if not (harness.root / "parcels" / sha / "parcel.dat").exists():
                    assert (await harness.upload(bundle, sha)).status == 200


class ThreadedServer:
    """The same harness on its own event loop in a thread, for synchronous callers."""

    def __init__(self, config: ServerConfig) -> None:
        self.harness = Harness(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Harness:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.harness.start(), self.loop).result(60)
        return self.harness

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.harness.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)
