"""Issue 3's benchmark: downloading a 200 MB parcel from the bindle server vs reading the file from disk.

The server runs as its own process (`python -m waft.bindle`), as in a deployment; the client streams
the parcel with aiohttp in 1 MiB chunks and hashes it, as the mlinference provider's fetch does. The
baseline reads the same file from the server's storage with the same chunking and hashing, so the
ratio is what HTTP and the server add. Rounds alternate to share the machine's noise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tools.bench.common import row
from waft.bindle.invoice import Invoice

SIZE = 200 * 1024 * 1024
CHUNK = 1 << 20


def _read_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def _download(session: aiohttp.ClientSession, url: str) -> str:
    digest = hashlib.sha256()
    async with session.get(url) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="waft-bench-bindle-") as tmp:
        root = Path(tmp)
        parcel = root / "parcel.bin"
        with parcel.open("wb") as f:  # incompressible content, written in chunks (never all in memory)
            for _ in range(SIZE // CHUNK):
                f.write(os.urandom(CHUNK))
        sha = await asyncio.to_thread(_read_file, parcel)
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "waft.bindle", "--address", "127.0.0.1:0", "--directory", str(root / "store"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            assert server.stdout is not None
            line = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
            base = line.split("listening on ", 1)[1].split()[0].rstrip("/")
            invoice = Invoice.from_toml(f'''bindleVersion = "1.0.0"
[bindle]
name = "bench/big"
version = "0.1.0"
[[parcel]]
[parcel.label]
sha256 = "{sha}"
mediaType = "application/octet-stream"
name = "parcel.bin"
size = {SIZE}
''')
            from waft.bindle.client import BindleClient

            async with BindleClient(base) as client:
                await client.push(invoice, {sha: parcel})
            stored = next((root / "store").rglob("parcel.dat"))
            url = f"{base}/_i/bench/big/0.1.0@{sha}"
            ours, baseline = [], []
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                assert await _download(session, url) == sha  # warm-up, and the bytes are right
                for _ in range(4):
                    start = time.perf_counter()
                    assert await _download(session, url) == sha
                    ours.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    assert await asyncio.to_thread(_read_file, stored) == sha
                    baseline.append(time.perf_counter() - start)
        finally:
            server.terminate()
            await server.wait()
    mb = SIZE / 1e6
    ours_rate, base_rate = mb / statistics.median(ours), mb / statistics.median(baseline)
    return [row("200 MB parcel download (sha256 checked) vs reading the file from disk", ours_rate, base_rate,
                "MB/s", lower_is_better=False, goal="streamed: never all in memory")]
