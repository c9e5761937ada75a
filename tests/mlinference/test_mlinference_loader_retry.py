"""Loading from a source that cannot be reached: retried with backoff a bounded number of times, shown in
health while retrying, then a precise failure; other models keep serving. In-process, no host."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from mlinference_support import ZOO, ensure_models, health_models, states
from waft_mlinference.registry import ModelRegistry
from waft_mlinference.settings import LinkSettings, ModelOptions, load_settings
from waft_mlinference.sources import DirectorySource, ModelFiles, SourceUnavailable

from waft.interfaces.mlinference import INVALID_MODEL, InferenceInput, ModelState, RetryInfo, Tensor

pytestmark = pytest.mark.timeout(120)
X4 = np.array([[1, 2, 3, 4]], np.float32)


class FlakySource:
    """Unreachable for the first `failures` fetches, then the built models; `gate` holds each failure
    until the test lets it through, so the test sees the retrying state without timing anything."""

    def __init__(self, failures: int) -> None:
        self.inner = DirectorySource(ensure_models())
        self.description = "flaky " + self.inner.description
        self.failures = failures
        self.fetches = 0

    async def fetch(self, bindle_id: str) -> ModelFiles:
        self.fetches += 1
        if self.fetches <= self.failures:
            raise SourceUnavailable(f"bindle {bindle_id} from http://127.0.0.1:9/v1/: cannot reach the bindle "
                                    f"server (fetch {self.fetches})")
        return await self.inner.fetch(bindle_id)


async def settled(registry: ModelRegistry) -> None:
    for model in list(registry.models.values()):
        if model.task is not None:
            await asyncio.wait_for(asyncio.shield(model.task), 60)


def request(model: str) -> InferenceInput:
    return InferenceInput(model, Tensor.from_numpy(X4))


async def test_unreachable_source_is_retried_then_loads():
    source = FlakySource(failures=2)
    registry = ModelRegistry()
    options = ModelOptions(load_attempts=3, load_backoff_ms=1)
    try:
        registry.attach("A", LinkSettings({"identity": ZOO["identity"]}, options={"identity": options}), source)
        await settled(registry)
        assert source.fetches == 3
        assert (await registry.predict("A", request("identity"))).ok
        report = registry.health()
        assert (report.healthy, report.message) == (True, "healthy: ready: identity")
        assert states(report) == [("identity", "ready")]
    finally:
        await registry.close()


async def test_retrying_shows_in_health_then_gives_up_with_the_last_error():
    source = FlakySource(failures=99)
    registry = ModelRegistry()
    slow = ModelOptions(load_attempts=3, load_backoff_ms=20_000)  # closed long before the retry
    try:
        registry.attach("A", LinkSettings({"identity": ZOO["identity"]}, options={"identity": slow}), source)
        model = registry.lookup("A", "identity")
        for _ in range(500):
            if model.retry:
                break
            await asyncio.sleep(0.01)
        report = registry.health()
        assert report.healthy and "loading: identity" in report.message
        assert "retrying: identity (attempt 1/3 failed, retrying in 20 s: " in report.message
        # as fields: one model, loading, with its retry; never a second "model" made of the retry text
        [status] = health_models(report)
        assert (status.name, status.state, status.bindle_id) == ("identity", ModelState.LOADING, ZOO["identity"])
        assert status.retry == RetryInfo(1, 3, 20.0, status.retry.error if status.retry else "")
        assert status.reason.startswith("attempt 1/3 failed") and "cannot reach the bindle server" in status.reason
        listed = registry.describe("A")[0]
        assert listed["retrying"].startswith("attempt 1/3 failed") and listed["retry"]["attempts"] == 3
    finally:
        await registry.close()

    source = FlakySource(failures=99)
    registry = ModelRegistry()
    fast = ModelOptions(load_attempts=3, load_backoff_ms=1)
    try:
        registry.attach("A", LinkSettings({"identity": ZOO["identity"]}, options={"identity": fast}), source)
        registry.attach("B", LinkSettings({"identity": ZOO["identity"]}, model_dir=ensure_models()))
        await settled(registry)
        assert source.fetches == 3
        failed = registry.lookup("A", "identity")
        assert failed.state is ModelState.FAILED and failed.retry is None
        out = await registry.predict("A", request("identity"))
        assert out.error is not None and out.error.variant == INVALID_MODEL
        assert "cannot reach the bindle server (fetch 3)" in out.error.message
        assert "gave up after 3 attempts" in out.error.message
        assert (await registry.predict("B", request("identity"))).ok  # the other model serves on
        report = registry.health()
        assert not report.healthy and "ready: identity" in report.message
        assert "gave up after 3 attempts" in report.message
        by_state = {m.state: m for m in health_models(report)}
        assert sorted(by_state) == [ModelState.FAILED, ModelState.READY] and len(health_models(report)) == 2
        assert "gave up after 3 attempts" in by_state[ModelState.FAILED].reason
        assert by_state[ModelState.FAILED].error_variant == INVALID_MODEL and by_state[ModelState.READY].reason == ""
    finally:
        await registry.close()


async def test_missing_bindle_is_not_retried(tmp_path):
    registry = ModelRegistry()
    source = DirectorySource(ensure_models())
    try:
        registry.attach("A", LinkSettings({"x": "nothing/0.0.1"}, options={"x": ModelOptions(load_attempts=5)}),
                        source)
        await settled(registry)
        error = registry.lookup("A", "x").error
        assert error is not None and "not found" in error.message and "attempt" not in error.message
    finally:
        await registry.close()


def test_retry_settings_from_link_values_and_env():
    config = {"config_json": json.dumps({"models": {"zoo": {"identity": ZOO["identity"]},
                                                    "options": {"identity": {"load_attempts": 2}}}}),
              "load_backoff_ms": "250"}
    options = load_settings(config, env={"WAFT_ML_LOAD_ATTEMPTS": "7"}).options_for("identity")
    assert (options.load_attempts, options.load_backoff_ms) == (2, 250)
    defaults = load_settings({"config_json": config["config_json"].replace('"load_attempts": 2', '"x": 1')},
                             env={"WAFT_ML_LOAD_ATTEMPTS": "7"}).options_for("identity")
    assert defaults.load_attempts == 7 and defaults.load_backoff_ms == ModelOptions().load_backoff_ms
    with pytest.raises(Exception, match="load_attempts 0: must be at least 1"):
        load_settings({"config_json": config["config_json"], "load_attempts": "0"}, env={})
