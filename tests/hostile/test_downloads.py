"""Downloads from servers that lie about sizes: refused before (or while) reading, never buffered whole.

The registry is the real one (Debian's docker-registry); its lies are manifests pushed to it by hand,
which it stores and serves as any registry would. The bindle server is a small aiohttp app here,
since ours never sends more than a label says.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import requests
from aiohttp import web
from waft_testing import docker_registry

from waft.bindle.client import BindleClient, BindleError
from waft.oci import OciError, cache, pull
from waft.oci.registry import ACTOR_CONFIG, ACTOR_LAYER, EMPTY_CONFIG, OCI_MANIFEST, push


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with docker_registry(tmp_path_factory.mktemp("registry")) as address:
            yield address
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def _put_manifest(registry: str, repository: str, tag: str, layer: dict[str, object]) -> None:
    """A manifest whose layer descriptor says what the test wants (the blobs are already there)."""
    config = {"mediaType": ACTOR_CONFIG, "digest": cache.digest_of(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    done = requests.put(f"http://{registry}/v2/{repository}/manifests/{tag}", data=json.dumps(manifest),
                        headers={"Content-Type": OCI_MANIFEST}, timeout=10)
    assert done.status_code == 201, done.text


def _blob(size: int) -> bytes:
    return b"\0asm" + os.urandom(size - 4)


def test_layer_over_the_limit_is_refused_before_download(registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _blob(64 << 10)
    pushed = push(f"{registry}/hostile/big:1", data, kind="actor", insecure=True)
    # Remove the blob: a client that tried to download it would fail on a 404, not on the limit.
    gone = requests.delete(f"http://{registry}/v2/hostile/big/blobs/{pushed['layer_digest']}", timeout=10)
    assert gone.status_code == 202, gone.text
    monkeypatch.setenv("WAFT_OCI_MAX_BLOB_BYTES", str(32 << 10))
    seen: list[int] = []
    with pytest.raises(OciError, match=r"over the limit of 32768 .*WAFT_OCI_MAX_BLOB_BYTES.*before downloading"):
        pull(f"{registry}/hostile/big:1", insecure=True, progress=lambda _label, done, _total: seen.append(done))
    assert seen == [] and not cache.blob_path(pushed["layer_digest"]).exists()


def test_blob_larger_than_declared_is_refused(registry: str) -> None:
    data = _blob(64 << 10)
    pushed = push(f"{registry}/hostile/liar:1", data, kind="actor", insecure=True)
    declared = len(data) - 1024
    _put_manifest(registry, "hostile/liar", "short", {"mediaType": ACTOR_LAYER, "digest": pushed["layer_digest"],
                                                       "size": declared})
    seen: list[int] = []
    with pytest.raises(OciError, match=f"size mismatch .*{declared} bytes"):
        pull(f"{registry}/hostile/liar:short", insecure=True, progress=lambda _label, done, _total: seen.append(done))
    assert max(seen, default=0) <= declared  # reading stopped at the declared size
    assert not cache.blob_path(pushed["layer_digest"]).exists()
    # the honest manifest of the same blob still pulls
    assert pull(f"{registry}/hostile/liar:1", insecure=True).data == data


def test_layer_without_a_size_is_refused(registry: str) -> None:
    pushed = push(f"{registry}/hostile/nosize:1", _blob(4096), kind="actor", insecure=True)
    _put_manifest(registry, "hostile/nosize", "nosize", {"mediaType": ACTOR_LAYER, "digest": pushed["layer_digest"]})
    with pytest.raises(OciError, match="without a valid size"):
        pull(f"{registry}/hostile/nosize:nosize", insecure=True)


def test_manifest_over_its_limit_is_refused(registry: str, monkeypatch: pytest.MonkeyPatch, hostile_home: Path) -> None:
    push(f"{registry}/hostile/manifest:1", _blob(4096), kind="actor", insecure=True)
    monkeypatch.setenv("WAFT_OCI_MAX_MANIFEST_BYTES", "100")
    with pytest.raises(OciError, match=r"manifest .*over the limit of 100 .*WAFT_OCI_MAX_MANIFEST_BYTES"):
        pull(f"{registry}/hostile/manifest:1", insecure=True)


# ------------------------------------------------------------------------------------- bindle parcels
class LyingBindle:
    """A bindle server that answers invoices honestly or padded, and parcels with what the test says."""

    def __init__(self) -> None:
        self.parcel = b""
        self.label_size = 0
        self.padding = 0  # bytes of annotation added to the invoice
        self.flood = 0  # when set: the parcel body is this many bytes, streamed without a Content-Length
        self.sent = 0

    def invoice(self) -> str:
        sha = hashlib.sha256(self.parcel).hexdigest()
        return "\n".join(['bindleVersion = "1.0.0"', "", "[bindle]", 'name = "liar"', 'version = "1.0.0"', "",
                          "[annotations]", f'pad = "{"x" * self.padding}"', "",
                          "[[parcel]]", f"label.sha256 = '{sha}'", "label.mediaType = 'application/octet-stream'",
                          "label.name = 'model.onnx'", f"label.size = {self.label_size}", ""])

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if "@" not in request.match_info["tail"]:
            return web.Response(body=self.invoice().encode(), content_type="application/toml")
        if not self.flood:
            return web.Response(body=self.parcel)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        block = b"\0" * (256 << 10)
        while self.sent < self.flood:
            await response.write(block)
            self.sent += len(block)
        await response.write_eof()
        return response


@pytest.fixture
async def liar() -> AsyncIterator[tuple[LyingBindle, str]]:
    server = LyingBindle()
    app = web.Application()
    app.router.add_route("GET", "/v1/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}/v1/"
    finally:
        await runner.cleanup()


async def test_parcel_longer_than_its_label_is_refused(liar: tuple[LyingBindle, str], tmp_path: Path) -> None:
    server, url = liar
    server.parcel = os.urandom(100_000)
    server.label_size = len(server.parcel) - 1  # the sha is right, the size is not
    sha = hashlib.sha256(server.parcel).hexdigest()
    async with BindleClient(url, cache_dir=tmp_path / "cache") as client:
        with pytest.raises(BindleError, match=f"{server.label_size}"):
            await client.get_parcel("liar/1.0.0", sha)
    assert not [p for p in (tmp_path / "cache").glob("*")]


async def test_endless_parcel_stops_one_byte_past_its_label(liar: tuple[LyingBindle, str], tmp_path: Path) -> None:
    server, url = liar
    server.parcel = b"a small model"
    server.label_size = len(server.parcel)
    server.flood = 64 << 20
    sha = hashlib.sha256(server.parcel).hexdigest()
    async with BindleClient(url, cache_dir=tmp_path / "cache") as client:
        with pytest.raises(BindleError, match=f"more than the {server.label_size} bytes"):
            await client.get_parcel("liar/1.0.0", sha)
    assert not [p for p in (tmp_path / "cache").glob("*")]


async def test_parcel_over_the_download_limit_is_not_fetched(liar: tuple[LyingBindle, str], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server, url = liar
    server.parcel = os.urandom(8192)
    server.label_size = len(server.parcel)
    monkeypatch.setenv("WAFT_BINDLE_MAX_DOWNLOAD_BYTES", "4096")
    async with BindleClient(url, cache_dir=tmp_path / "cache") as client:
        with pytest.raises(BindleError, match="WAFT_BINDLE_MAX_DOWNLOAD_BYTES"):
            await client.get_parcel("liar/1.0.0", hashlib.sha256(server.parcel).hexdigest())
    monkeypatch.delenv("WAFT_BINDLE_MAX_DOWNLOAD_BYTES")
    async with BindleClient(url, cache_dir=tmp_path / "cache") as client:
        path = await client.get_parcel("liar/1.0.0", hashlib.sha256(server.parcel).hexdigest())
    assert path.read_bytes() == server.parcel


async def test_invoice_reads_are_bounded(liar: tuple[LyingBindle, str], monkeypatch: pytest.MonkeyPatch) -> None:
    server, url = liar
    server.parcel, server.label_size, server.padding = b"x", 1, 64 << 10
    monkeypatch.setenv("WAFT_BINDLE_MAX_RESPONSE_BYTES", "4096")
    async with BindleClient(url) as client:
        with pytest.raises(BindleError, match=r"over the limit of 4096 .*WAFT_BINDLE_MAX_RESPONSE_BYTES"):
            await client.get_invoice("liar/1.0.0")
        server.padding = 16
        assert (await client.get_invoice("liar/1.0.0")).parcels[0].label.size == 1
