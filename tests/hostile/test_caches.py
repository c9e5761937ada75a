"""Caches on a disk someone else can write: a changed entry is never handed out as if it were fetched."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from waft.bindle.client import BindleClient
from waft.bindle.invoice import Invoice
from waft.bindle.server import ServerConfig, create_app

MODEL = os.urandom(200_000)
SHA = hashlib.sha256(MODEL).hexdigest()
INVOICE = "\n".join(['bindleVersion = "1.0.0"', "", "[bindle]", 'name = "cached"', 'version = "1.0.0"', "",
                     "[[parcel]]", f"label.sha256 = '{SHA}'", "label.mediaType = 'application/octet-stream'",
                     "label.name = 'model.onnx'", f"label.size = {len(MODEL)}", ""])


@pytest.fixture
async def bindle(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """Our bindle server with the model pushed; the list collects the paths of parcel GETs."""
    gets: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.method == "GET" and "@" in request.path:
            gets.append(request.path)
        return await handler(request)

    app = create_app(ServerConfig(directory=tmp_path / "store"))
    app.middlewares.append(record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/"
    async with BindleClient(url, cache_dir=tmp_path / "unused") as client:
        await client.push(Invoice.from_toml(INVOICE), {SHA: MODEL})
    try:
        yield url, gets
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("tamper", ["flip", "truncate", "replace"])
async def test_altered_parcel_in_the_cache_is_fetched_again(bindle: tuple[str, list[str]], tmp_path: Path,
                                                            tamper: str) -> None:
    url, gets = bindle
    cache_dir = tmp_path / "parcels"
    async with BindleClient(url, cache_dir=cache_dir) as client:
        path = await client.get_parcel("cached/1.0.0", SHA)
        assert path.read_bytes() == MODEL and len(gets) == 1
        assert await client.get_parcel("cached/1.0.0", SHA) == path and len(gets) == 1  # a good hit: no fetch
        altered = {"flip": MODEL[:-1] + bytes([MODEL[-1] ^ 1]), "truncate": MODEL[:1000],
                   "replace": b"an onnx graph of the attacker's choosing"}[tamper]
        path.write_bytes(altered)
        again = await client.get_parcel("cached/1.0.0", SHA)
    assert again.read_bytes() == MODEL
    assert len(gets) == 2  # dropped and fetched from the server
    assert sorted(p.name for p in cache_dir.iterdir()) == [SHA]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no digest"])
def test_a_torn_onnxruntime_cache_entry_is_rebuilt_not_fatal(tmp_path: Path, damage: str) -> None:
    """The optimised-graph cache is written by a process that may die mid-write or share a disk with others:
    an entry whose digest does not match is dropped and rebuilt, and the model answers as before."""
    import numpy as np
    from waft_mlinference.engines import load_engine
    from waft_mlinference.metadata import ModelMetadata
    from waft_mlinference.settings import ModelOptions

    folder = Path(__file__).resolve().parents[2] / "build" / "models" / "effnetlite0"
    meta = ModelMetadata.parse((folder / "metadata.json").read_bytes())
    image = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    cache = tmp_path / "ort"
    first = load_engine(folder / "efficientnet-lite0.onnx", meta, ModelOptions(), cache)
    want = first.run(image)[0]
    (entry,) = cache.glob("*.onnx")
    data = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        entry.write_bytes(data[:-100] + bytes(b ^ 0xFF for b in data[-100:]))
    else:
        entry.with_name(entry.name + ".sha256").unlink()
    again = load_engine(folder / "efficientnet-lite0.onnx", meta, ModelOptions(), cache)
    assert not again.optimized_from_cache  # rebuilt from the model file
    np.testing.assert_array_equal(again.run(image)[0], want)
    third = load_engine(folder / "efficientnet-lite0.onnx", meta, ModelOptions(), cache)
    assert third.optimized_from_cache  # and the rebuilt entry is whole
    np.testing.assert_array_equal(third.run(image)[0], want)
