"""Large parcels stream through: neither the server nor the client holds a parcel in memory.

Measured with tracemalloc (allocations, not time): uploading and downloading a parcel many times the
size of the transfer chunks must peak far below the parcel's size.
"""

from __future__ import annotations

import hashlib
import tracemalloc

from bindle_support import Bundle, FileSpec

from waft.bindle.client import BindleClient
from waft.bindle.invoice import Invoice

SIZE = 48 << 20


async def test_large_parcel_round_trip_stays_out_of_memory(server, tmp_path):
    source = tmp_path / "big.bin"
    hasher = hashlib.sha256()
    block = hashlib.sha512(b"stream").digest() * 16384  # 1 MiB
    with source.open("wb") as fh:
        for i in range(SIZE // len(block)):
            chunk = block[:-8] + i.to_bytes(8, "big")
            hasher.update(chunk)
            fh.write(chunk)
    sha = hasher.hexdigest()
    # the invoice only needs the label; the Bundle helper would hash the bytes itself
    text = Bundle("big.example/model", "1.0.0", [FileSpec("big.bin", "application/octet-stream", b"")]).toml()
    text = text.replace(hashlib.sha256(b"").hexdigest(), sha).replace("label.size = 0", f"label.size = {SIZE}")

    async with BindleClient(server.url, cache_dir=tmp_path / "cache") as client:
        _, missing = await client.create_invoice(Invoice.from_toml(text))
        assert [m.sha256 for m in missing] == [sha]
        tracemalloc.start()
        try:
            await client.upload_parcel("big.example/model/1.0.0", sha, source)
            _, upload_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            path = await client.get_parcel("big.example/model/1.0.0", sha)
            _, download_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert upload_peak < SIZE // 6, upload_peak
    assert download_peak < SIZE // 6, download_peak
    stored = server.root / "parcels" / sha / "parcel.dat"
    assert stored.stat().st_size == SIZE and path.stat().st_size == SIZE
    check = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            check.update(chunk)
    assert check.hexdigest() == sha
