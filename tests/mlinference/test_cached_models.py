"""Models on every host: a host whose bindle server is unreachable still loads what it has cached.

A real bindle server serves plus3 once (the provider's registry caches its invoice and parcels), the
server is stopped, and a fresh registry with the same cache loads plus3 and answers x + 3 (numpy is the
reference). A cached parcel altered on disk, or a model never fetched, is not loaded from the cache: the
failure names the unreachable server and what is missing. In-process, no host.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from mlinference_support import ZOO, bindle_server
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings, ModelOptions

from waft.interfaces.mlinference import InferenceInput, ModelState, Tensor

pytestmark = pytest.mark.timeout(120)
X = np.array([[1.5, -2.0, 3.25, 40.0]], np.float32)


async def _load(cache: Path, url: str) -> ModelRegistry:
    registry = ModelRegistry(cache_dir=cache)
    registry.attach("A", LinkSettings({"plus3": ZOO["plus3"]}, bindle_url=url,
                                      options={"plus3": ModelOptions(load_attempts=1, load_backoff_ms=1)}))
    for model in list(registry.models.values()):
        assert model.task is not None
        await asyncio.wait_for(asyncio.shield(model.task), 60)
    return registry


async def _predict(registry: ModelRegistry) -> np.ndarray:
    result = await registry.predict("A", InferenceInput("plus3", Tensor.from_numpy(X)))
    assert result.ok, result
    return result.tensor.to_numpy()


async def _cache_then_stop(tmp_path: Path) -> tuple[Path, str]:
    cache = tmp_path / "cache"
    async with bindle_server(tmp_path / "bindle", routes=("plus3",)) as bindle:
        registry = await _load(cache, bindle.url)
        try:
            np.testing.assert_array_equal(await _predict(registry), X + 3)
        finally:
            await registry.close()
        url = bindle.url
    return cache, url


async def test_a_cached_model_loads_when_the_bindle_server_is_stopped(tmp_path: Path) -> None:
    cache, url = await _cache_then_stop(tmp_path)
    registry = await _load(cache, url)
    try:
        model = registry.lookup("A", "plus3")
        assert model.state is ModelState.READY, model.error
        np.testing.assert_array_equal(await _predict(registry), X + 3)
    finally:
        await registry.close()


async def test_an_altered_cached_parcel_is_not_loaded(tmp_path: Path) -> None:
    cache, url = await _cache_then_stop(tmp_path)
    parcels = [p for p in (cache / "parcels").iterdir() if not p.name.startswith(".")]
    biggest = max(parcels, key=lambda p: p.stat().st_size)  # the model file
    data = bytearray(biggest.read_bytes())
    data[-1] ^= 0xFF
    biggest.write_bytes(bytes(data))
    registry = await _load(cache, url)
    try:
        model = registry.lookup("A", "plus3")
        assert model.state is ModelState.FAILED
        assert model.error is not None
        assert "cannot reach the bindle server" in model.error.message
        assert "no longer matches its sha256" in model.error.message
    finally:
        await registry.close()


async def test_a_model_never_fetched_fails_naming_the_server(tmp_path: Path) -> None:
    _, url = await _cache_then_stop(tmp_path)
    registry = await _load(tmp_path / "empty-cache", url)
    try:
        model = registry.lookup("A", "plus3")
        assert model.state is ModelState.FAILED and model.error is not None
        assert url.rstrip("/") in model.error.message and "not cached here" in model.error.message
    finally:
        await registry.close()
