"""The Models table in a real headless Chromium shows each model's real state, as the mlinference provider
reports it, within a health interval: a lattice with the provider, a model that loads (held in `loading`
by the test until it lets it through) and one whose bindle does not exist."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import open_page, serving_dashboard
from waft_testing import running_host

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mlinference"))
from mlinference_support import ZOO, bindle_server, link_values, mlcheck_actor

from waft.ctl import CtlClient
from waft.interfaces.mlinference import CONTRACT_ID

pytestmark = pytest.mark.timeout(240)
#: Short, so a state that only a later health check can report shows quickly; the waits below are generous.
HEALTH_INTERVAL_S = 1.0
WAIT_MS = 60_000


def status_cell(page, route: str):
    return page.locator(f'#models tr[data-route="{route}"] td.model-status')


async def test_models_table_shows_ready_loading_and_failed_with_the_reason(nats_url, lattice_prefix, browser,
                                                                           tmp_path: Path):
    zoo = {"identity": ZOO["identity"], "ghost": "no-such-model/1.0.0"}
    async with bindle_server(tmp_path / "bindle", routes=("identity",), gated=("identity_model",)) as bindle, \
            running_host(nats_url=nats_url, prefix=lattice_prefix, health_interval_s=HEALTH_INTERVAL_S) as host, \
            serving_dashboard(nats_url, lattice_prefix, bindle_url=bindle.url) as url:
        pool = await host.start_actor(mlcheck_actor(tmp_path))
        provider = await host.start_provider("python:waft_mlinference")
        async with CtlClient.connect(nats_url, lattice_prefix) as ctl:
            await ctl.put_link(pool.public_key, provider.public_key, CONTRACT_ID, "default",
                               link_values(zoo, bindle_url=bindle.url))
        async with open_page(browser, url) as (page, errors):
            # the missing bindle fails at once, and says why; identity is held in loading by the gate
            ghost = status_cell(page, "ghost")
            await ghost.locator(".badge.bad", has_text="failed").wait_for(timeout=WAIT_MS)
            assert "no-such-model/1.0.0 not found" in await ghost.locator(".reason").inner_text()
            identity = status_cell(page, "identity")
            await identity.locator(".badge.warn", has_text="loading").wait_for(timeout=WAIT_MS)
            provider_row = page.locator(f'#providers tr[data-provider-id="{provider.public_key}"]')
            await provider_row.locator(".badge.bad", has_text="unhealthy").wait_for(timeout=WAIT_MS)

            # Now the model loads while the provider stays unhealthy (ghost still failed): the healthy
            # flag does not flip, and only a health_check_status event can tell the page.
            bindle.release()
            await identity.locator(".badge.ok", has_text="ready").wait_for(timeout=WAIT_MS)
            assert await identity.locator(".reason").count() == 0
            assert await page.locator('#events li[data-event="health_check_status"]').count() >= 1
            assert await page.locator('#models tr[data-route="identity"]').get_attribute("data-model") == \
                "identity_model"  # merged with the bindle's own entry, not a second row
            assert await page.locator("#models tr").count() == 2
            assert await ghost.locator(".badge.bad", has_text="failed").count() == 1
            assert errors == []
