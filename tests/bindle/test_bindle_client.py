"""The client API other parts use, against a real in-process server; requests counted server-side."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from bindle_support import CARGOBAY, IDENTITY, MOBILENET, RED, WARPCORE_V1, WARPCORE_V2, ThreadedServer

from waft.bindle.client import (
    BindleClient,
    InvalidRequest,
    InvoiceAlreadyExists,
    InvoiceNotFound,
    ParcelAlreadyExists,
    ParcelNotFound,
    ServerError,
    SyncBindleClient,
    Unauthorized,
    default_url,
)
from waft.bindle.invoice import Invoice
from waft.bindle.server import ServerConfig


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


async def test_round_trip_and_cache_hit(server, cache_dir):
    async with BindleClient(server.url, cache_dir=cache_dir) as client:
        stored, missing = await client.create_invoice(Invoice.from_toml(IDENTITY.toml()))
        assert stored.id == Invoice.from_toml(IDENTITY.toml()).id
        assert [s.role for s in stored.signature] == ["host"]
        assert sorted(m.sha256 for m in missing) == sorted(IDENTITY.parcels)
        for sha, data in IDENTITY.parcels.items():
            await client.upload_parcel(IDENTITY.id, sha, data)
        assert await client.missing_parcels(IDENTITY.id) == []

        fetched = await client.get_invoice("identity_model/0.2.0")
        model = next(p for p in fetched.parcels if p.member_of("model"))
        path = await client.get_parcel(fetched.id, model.label.sha256)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == model.label.sha256
        assert path == cache_dir / model.label.sha256
        assert server.count("GET", f"@{model.label.sha256}") == 1
        again = await client.get_parcel(fetched.id, model.label.sha256)
        assert again == path
        assert server.count("GET", f"@{model.label.sha256}") == 1  # served from the cache
    # a fresh client on the same cache directory does not download either
    async with BindleClient(server.url, cache_dir=cache_dir) as client:
        await client.get_parcel(fetched.id, model.label.sha256)
    assert server.count("GET", f"@{model.label.sha256}") == 1
    assert not list(cache_dir.glob("*.part")) and not list(cache_dir.glob(".*"))


async def test_default_cache_is_under_waft_home(server, tmp_path):
    async with BindleClient(server.url) as client:
        await client.push(Invoice.from_toml(WARPCORE_V1.toml()), WARPCORE_V1.parcels)
        path = await client.get_parcel(WARPCORE_V1.id, RED.sha)
    assert path == tmp_path / "waft-home" / "cache" / "parcels" / RED.sha
    assert path.read_bytes() == b"a red one"


async def test_upload_from_file_streams_with_content_length(server, tmp_path, cache_dir):
    model = MOBILENET.files[0]
    file = tmp_path / model.name
    file.write_bytes(model.data)
    async with BindleClient(server.url, cache_dir=cache_dir) as client:
        await client.create_invoice(MOBILENET.toml())
        await client.upload_parcel(MOBILENET.id, model.sha, file)
        assert await client.parcel_exists(MOBILENET.id, model.sha)
        assert not await client.parcel_exists(MOBILENET.id, MOBILENET.files[1].sha)
    # not chunked: the server can refuse an oversize or wrong-size body before reading it
    assert (f"/v1/_i/{MOBILENET.id}@{model.sha}", len(model.data), False) in server.framing
    assert (server.root / "parcels" / model.sha / "parcel.dat").read_bytes() == model.data


async def test_push_uploads_only_missing(server, cache_dir):
    async with BindleClient(server.url, cache_dir=cache_dir) as client:
        first = await client.push(Invoice.from_toml(WARPCORE_V1.toml()), WARPCORE_V1.parcels)
        assert first.created and first.uploaded == [RED.sha]
        second = await client.push(Invoice.from_toml(WARPCORE_V2.toml()), WARPCORE_V2.parcels)
        assert second.created and second.uploaded == [WARPCORE_V2.files[1].sha]
        again = await client.push(Invoice.from_toml(WARPCORE_V2.toml()), WARPCORE_V2.parcels)
        assert not again.created and again.uploaded == [] and again.missing == []
        partial = await client.push(Invoice.from_toml(CARGOBAY.toml()), {})
        assert sorted(m.name for m in partial.missing) == ["barrel.txt", "crate.txt"]
    assert server.count("POST", f"@{RED.sha}") == 1


async def test_search_and_yank(server, cache_dir):
    async with BindleClient(server.url, cache_dir=cache_dir) as client:
        for bundle in (WARPCORE_V1, WARPCORE_V2, IDENTITY):
            await client.push(Invoice.from_toml(bundle.toml()), bundle.parcels)
        found = await client.search("warpcore", version="^1")
        assert [str(i.id) for i in found.invoices] == ["enterprise.com/warpcore/1.0.0"]
        page = await client.search("", limit=1, offset=1)
        assert (page.total, page.more, len(page.invoices)) == (3, True, 1)
        await client.yank(WARPCORE_V1.id)
        with pytest.raises(InvoiceNotFound):
            await client.get_invoice(WARPCORE_V1.id)
        assert (await client.get_invoice(WARPCORE_V1.id, yanked=True)).yanked is True
        with pytest.raises(InvoiceNotFound):
            await client.missing_parcels(WARPCORE_V1.id)
        assert [str(i.id) for i in (await client.search("warpcore")).invoices] == ["enterprise.com/warpcore/2.0.0"]


async def test_errors_map_to_types(server, cache_dir):
    async with BindleClient(server.url, cache_dir=cache_dir) as client:
        with pytest.raises(InvoiceNotFound):
            await client.get_invoice("ghost/1.0.0")
        await client.push(Invoice.from_toml(WARPCORE_V2.toml()), {RED.sha: b"a red one"})
        with pytest.raises(InvoiceAlreadyExists):
            await client.create_invoice(WARPCORE_V2.toml())
        with pytest.raises(ParcelAlreadyExists):
            await client.upload_parcel(WARPCORE_V2.id, RED.sha, b"a red one")
        with pytest.raises(ParcelNotFound):
            await client.get_parcel(WARPCORE_V2.id, WARPCORE_V2.files[1].sha)
        with pytest.raises(InvalidRequest, match="digest does not match"):
            await client.upload_parcel(WARPCORE_V2.id, WARPCORE_V2.files[1].sha, b"a blue one!")
        assert not list(server.root.rglob("*.part"))


async def test_unreachable_server_is_a_server_error(tmp_path):
    async with BindleClient("http://127.0.0.1:9/v1", cache_dir=tmp_path) as client:
        with pytest.raises(ServerError, match="cannot reach"):
            await client.get_invoice("x/1.0.0")


async def test_basic_auth(make_server, tmp_path, cache_dir):
    import bcrypt
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("admin:" + bcrypt.hashpw(b"sw0rdf1sh", bcrypt.gensalt(rounds=4)).decode() + "\n")
    server = await make_server(htpasswd_file=htpasswd)
    async with BindleClient(server.url, cache_dir=cache_dir) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.create_invoice(WARPCORE_V1.toml())
    async with BindleClient(server.url, auth=("admin", "sw0rdf1sh"), cache_dir=cache_dir) as admin:
        await admin.push(Invoice.from_toml(WARPCORE_V1.toml()), WARPCORE_V1.parcels)
    async with BindleClient(server.url, cache_dir=cache_dir) as anonymous:
        assert (await anonymous.get_parcel(WARPCORE_V1.id, RED.sha)).read_bytes() == b"a red one"
    async with BindleClient(server.url, auth=("admin", "nope"), cache_dir=cache_dir) as wrong:
        with pytest.raises(Unauthorized):
            await wrong.get_invoice(WARPCORE_V1.id)


def test_sync_client_and_bindle_url(tmp_path, monkeypatch):
    assert default_url() == "http://127.0.0.1:8080/v1/"
    with ThreadedServer(ServerConfig(directory=tmp_path / "store")) as harness:
        monkeypatch.setenv("BINDLE_URL", harness.url.rstrip("/"))
        with SyncBindleClient(cache_dir=tmp_path / "cache") as client:
            assert client.client.base_url == harness.url
            result = client.push(Invoice.from_toml(IDENTITY.toml()), IDENTITY.parcels)
            assert sorted(result.uploaded) == sorted(IDENTITY.parcels)
            invoice = client.get_invoice(IDENTITY.id)
            meta = next(p for p in invoice.parcels if p.member_of("metadata"))
            assert client.get_parcel(IDENTITY.id, meta.label.sha256).read_bytes() == IDENTITY.parcels[meta.label.sha256]
