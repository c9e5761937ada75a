"""The lattice every end-to-end module serves its models from, started once per module: a real host in the
test's event loop, the three actors built from actors/, both providers as processes, and the two links (the
mlinference one naming the module's models, the httpserver one a free port). One helper, so the modules do
not each restate the same twenty lines of start-up and drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
for _folder in ("mlinference", "httpserver", "actors"):
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))


def missing_part() -> str | None:
    """Why the end-to-end tests cannot run here, or None. Each part is a separate issue's work."""
    root = TESTS.parent
    needs = {
        "the httpserver provider": root / "providers" / "httpserver" / "waft_httpserver" / "provider.py",
        "the mlinference provider": root / "providers" / "mlinference" / "waft_mlinference" / "provider.py",
        "the pre-processor actor": root / "actors" / "preprocessor" / "actor.toml",
        "the post-processor actor": root / "actors" / "postprocessor" / "actor.toml",
        "the API actor": root / "actors" / "api" / "actor.toml",
        "the bindle server": root / "src" / "waft" / "bindle" / "server.py",
        "the model recipes": root / "models" / "build.py",
    }
    for what, path in needs.items():
        if not path.exists():
            return f"{what} is missing ({path.relative_to(root)})"
    if shutil.which("curl") is None:
        return "curl is not installed"
    for module in ("onnxruntime", "PIL", "skimage"):
        try:
            __import__(module)
        except ImportError:
            return f"python package {module} is not installed"
    return None


def skip_if_missing() -> None:
    reason = missing_part()
    if reason:
        pytest.skip(reason)


def chelsea_jpeg(path: Path | None = None) -> bytes:
    """scikit-image's bundled cat photo (no download), as the JPEG a user would send."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, "JPEG", quality=92)
    if path is not None:
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


@dataclass
class Lattice:
    """What a module's tests reach: the HTTP base URL, and the host and keys to change links through."""

    url: str
    host: Any
    api_key: str
    ml_key: str

    async def link_models(self, values: dict[str, str]) -> None:
        """Put (or change: the SDK re-links on changed values) the API actor's mlinference link."""
        from waft.lattice.types import LinkDefinition

        await self.host.put_link(LinkDefinition(self.api_key, self.ml_key, "wasmcloud:mlinference", "default", values))


@contextlib.asynccontextmanager
async def ml_lattice(nats_url: str, prefix: str, ml_link: dict[str, str], *,
                     ready: tuple[str, ...] = ()) -> AsyncIterator[Lattice]:
    """The whole request path with `ml_link` as the mlinference link values; returns once HTTP answers and
    every route in `ready` has loaded."""
    import aiohttp
    from httpserver_support import free_port, wait_serving
    from waft_testing import built_actor, running_host

    from waft.claims import KeyPair, Role
    from waft.lattice.types import LinkDefinition

    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=prefix, cluster_seed=cluster.seed, rpc_timeout_s=30) as host:
        api = await host.start_actor(str(built_actor("api")))
        await host.start_actor(str(built_actor("preprocessor")))
        await host.start_actor(str(built_actor("postprocessor")))
        ml = await host.start_provider("python:waft_mlinference")
        web = await host.start_provider("python:waft_httpserver")
        port = free_port()
        lattice = Lattice(f"http://127.0.0.1:{port}", host, api.public_key, ml.public_key)
        await lattice.link_models(ml_link)
        await host.put_link(LinkDefinition(api.public_key, web.public_key, "wasmcloud:httpserver", "default",
                                           {"address": f"127.0.0.1:{port}"}))
        await wait_serving(f"{lattice.url}/healthz")
        async with aiohttp.ClientSession() as session:
            for route in ready:
                await wait_model_ready(session, lattice.url, route)
        yield lattice


async def wait_model_ready(session: Any, url: str, model: str, *, attempts: int = 1200) -> None:
    """Poll the KServe model-ready route until the link has arrived and the model loaded (no timing
    assertion: a bounded number of polls, each answered at once)."""
    last = None
    for _ in range(attempts):
        async with session.get(f"{url}/v2/models/{model}/ready") as response:
            last = (response.status, await response.text())
            if response.status == 200:
                return
            assert response.status in (404, 503), last  # link not there yet / still loading
        await asyncio.sleep(0.1)
    raise AssertionError(f"model {model} never became ready: {last}")
