"""Issue 8 acceptance: the dashboard in a real headless Chromium against a real host and NATS server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nats
import pytest
from conftest import open_page, serving_dashboard
from prometheus_client.parser import text_string_to_metric_families
from waft_testing import ROOT, built_actor, running_host

from waft import __version__
from waft.ctl import CtlClient
from waft.lattice import subjects
from waft.lattice.connection import server_caught_up

pytestmark = pytest.mark.timeout(180)
TEST_CONTRACT = "waft:test"
SCREENSHOT = ROOT / "build" / "dashboard.png"


@contextlib.asynccontextmanager
async def application(nats_url: str, prefix: str) -> AsyncIterator[tuple[object, str, str]]:
    """A host running the echo actor and the test provider, linked; yields (host, actor id, provider id)."""
    async with running_host(nats_url=nats_url, prefix=prefix) as host:
        pool = await host.start_actor(str(built_actor("echo")))
        provider = await host.start_provider("python:waft_testprovider")
        async with CtlClient.connect(nats_url, prefix) as ctl:
            await ctl.put_link(pool.public_key, provider.public_key, TEST_CONTRACT, "default", {"greeting": "hi"})
        yield host, pool.public_key, provider.public_key


@contextlib.asynccontextmanager
async def model_repository(directory: Path) -> AsyncIterator[str]:
    """An in-process bindle server holding one small model; yields its URL."""
    from waft.bindle.client import BindleClient
    from waft.bindle.server import ServerConfig, serve

    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(ServerConfig(directory=directory), "127.0.0.1", 0, on_ready=ready.set_result,
                                     stop=stop))
    try:
        url = await asyncio.wait_for(ready, 30)
        model = b"\x08\x07" * 40_000
        sha = hashlib.sha256(model).hexdigest()
        invoice = (f'bindleVersion = "1.0.0"\n[bindle]\nname = "efficientnet-lite0"\nversion = "0.1.0"\n'
                   f'authors = ["test"]\n[[parcel]]\n[parcel.label]\nsha256 = "{sha}"\n'
                   f'mediaType = "application/octet-stream"\nname = "efficientnet-lite0.onnx"\nsize = {len(model)}\n')
        async with BindleClient(url) as client:
            await client.create_invoice(invoice)
            await client.upload_parcel("efficientnet-lite0/0.1.0", sha, model)
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def publish_access(nats_url: str, prefix: str, events: list[dict]) -> None:
    nc = await nats.connect(nats_url)
    try:
        for event in events:
            await nc.publish(subjects.access_log(prefix), json.dumps(event).encode())
        await server_caught_up(nc)
    finally:
        await nc.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_event(i: int, model: str = "effnetlite0", status: int = 200) -> dict:
    return {"method": "POST", "path": f"/{model}/classify", "status": status, "bytes": 512 + i,
            "ms": 4.0 + 3 * i, "model": model}


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):
    """Retry an async check until it returns a truthy value; the last value is asserted by the caller."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(interval)


async def test_page_shows_the_running_application(nats_url, lattice_prefix, browser, tmp_path: Path):
    async with application(nats_url, lattice_prefix) as (host, actor_id, provider_id), \
            model_repository(tmp_path / "bindle") as bindle_url, \
            serving_dashboard(nats_url, lattice_prefix, bindle_url=bindle_url) as url:
        async with open_page(browser, url) as (page, errors):
            await page.locator(f'#actors tr[data-actor-id="{actor_id}"]').wait_for(timeout=5_000)
            await page.locator(f'#providers tr[data-provider-id="{provider_id}"]').wait_for(timeout=5_000)
            await page.locator(f'#links tr[data-actor-id="{actor_id}"]').wait_for(timeout=5_000)
            assert await page.locator(f'#hosts [data-host-id="{host.host_id}"]').count() == 1
            assert "echo" in await page.locator(f'#actors tr[data-actor-id="{actor_id}"]').inner_text()
            assert await page.locator(f'#actors tr[data-actor-id="{actor_id}"] td.instances').inner_text() == "1"
            provider_row = page.locator(f'#providers tr[data-provider-id="{provider_id}"]')
            assert TEST_CONTRACT in await provider_row.inner_text()
            # the provider turns healthy through a health_check_passed event, without a reload
            await provider_row.locator(".badge.ok").wait_for(timeout=10_000)
            link_row = await page.locator(f'#links tr[data-actor-id="{actor_id}"]').inner_text()
            assert "echo" in link_row and "Test provider" in link_row and "greeting=hi" in link_row
            assert await page.locator("#prefix").inner_text() == lattice_prefix
            model_row = page.locator('#models tr[data-model="efficientnet-lite0"]')
            await model_row.wait_for(timeout=5_000)
            assert "onnx" in await model_row.inner_text() and "78.1 KiB" in await model_row.inner_text()
            # claims on click
            await page.locator(f'#actors tr[data-actor-id="{actor_id}"] [data-action="claims"]').click()
            claims = page.locator("#dlg-claims")
            await claims.get_by_text("waft/echo").wait_for(timeout=5_000)
            assert "wasmcloud:httpserver" in await claims.inner_text()
            await claims.get_by_role("button", name="Close").click()
            # a link put now shows in the event log and in the links table
            async with CtlClient.connect(nats_url, lattice_prefix) as ctl:
                await ctl.put_link(actor_id, provider_id, TEST_CONTRACT, "second", {"k": "v"})
            await page.locator('#events li[data-event="linkdef_set"]').wait_for(timeout=5_000)
            await page.locator('#links tr[data-link-name="second"]').wait_for(timeout=5_000)

            # some traffic, so the screenshot shows the charts too
            await publish_access(nats_url, lattice_prefix, [request_event(i % 7) for i in range(12)]
                                 + [request_event(i, "mobilenetv2") for i in range(6)]
                                 + [request_event(1, "mobilenetv2", 503)])
            await page.wait_for_function("window.waft.metrics && window.waft.metrics.models.mobilenetv2 "
                                         "&& window.waft.metrics.models.mobilenetv2.total === 7", timeout=10_000)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert SCREENSHOT.stat().st_size > 10_000
            assert errors == []


async def test_cli_start_appears_and_page_steers_the_lattice(nats_url, lattice_prefix, browser):
    async with application(nats_url, lattice_prefix) as (host, actor_id, _provider_id), \
            serving_dashboard(nats_url, lattice_prefix) as url, \
            CtlClient.connect(nats_url, lattice_prefix) as ctl:
        async with open_page(browser, url) as (page, errors):
            loads = await page.evaluate("performance.getEntriesByType('navigation').length")

            # an actor started from the control interface shows up within 2 s, without a reload
            hostcheck = str(built_actor("hostcheck"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            await ctl.start_actor(host.host_id, hostcheck)
            await page.locator("#actors tr", has_text="hostcheck").wait_for(timeout=5_000)
            assert loop.time() - started < 2.0, f"took {loop.time() - started:.2f} s"

            # scale echo to 3 from the page: the host's inventory follows
            row = page.locator(f'#actors tr[data-actor-id="{actor_id}"]')
            await row.locator('[data-action="scale"]').click()
            await page.locator("#scale-count").fill("3")
            await page.locator("#scale-submit").click()

            async def echo_instances() -> int:
                inv = await ctl.get_inventory(host.host_id)
                return next((len(a["instances"]) for a in inv["actors"] if a["id"] == actor_id), 0)

            assert await eventually(lambda: _equals(echo_instances, 3)), await echo_instances()
            await page.wait_for_function(
                f"document.querySelector('#actors tr[data-actor-id=\"{actor_id}\"] td.instances').textContent === '3'",
                timeout=5_000)

            # delete the link from the page: gone from the lattice and from the page
            assert any(link["actor_id"] == actor_id for link in await ctl.get_links())
            await page.locator(f'#links tr[data-actor-id="{actor_id}"] [data-action="delete-link"]').click()
            await page.locator("#confirm-ok").click()

            async def link_gone() -> bool:
                return not any(link["actor_id"] == actor_id for link in await ctl.get_links())

            assert await eventually(link_gone)
            await page.locator(f'#links tr[data-actor-id="{actor_id}"]').wait_for(state="detached", timeout=5_000)

            # no reload happened: one navigation, and the websocket saw every change
            assert await page.evaluate("performance.getEntriesByType('navigation').length") == loads == 1
            assert await page.evaluate("window.waft.updates") > 1
            assert errors == []


async def _equals(check, expected) -> bool:
    return await check() == expected


CANVAS_PIXELS = """(model) => {
  const canvas = document.querySelector(`#charts .chart-card[data-model="${model}"] canvas.chart-latency`);
  return canvas ? canvas.toDataURL() : null;
}"""


async def test_traffic_moves_counter_chart_and_metrics(nats_url, lattice_prefix, browser, tmp_path: Path):
    async with application(nats_url, lattice_prefix), serving_dashboard(nats_url, lattice_prefix) as url:
        async with open_page(browser, url) as (page, errors):
            assert await page.locator("#requests-total").inner_text() == "0"
            assert await page.evaluate(CANVAS_PIXELS, "effnetlite0") is None

            # ten requests: 8 answered, 2 failed
            events = [request_event(i) for i in range(8)] + [request_event(8, status=500), request_event(9, status=503)]
            await publish_access(nats_url, lattice_prefix, events)
            await page.wait_for_function("document.querySelector('#requests-total').textContent === '10'",
                                         timeout=10_000)
            model = await page.evaluate("window.waft.metrics.models.effnetlite0")
            assert model["total"] == 10 and model["errors"] == 2
            assert sum(p["rps"] for p in model["points"]) == 10
            assert max(p["p95"] for p in model["points"]) >= max(p["p50"] for p in model["points"]) > 0
            card = page.locator('#charts .chart-card[data-model="effnetlite0"]')
            assert await card.locator(".stat-total").inner_text() == "10"
            assert await card.locator(".stat-errors").inner_text() == "2"
            first = await page.evaluate(CANVAS_PIXELS, "effnetlite0")
            blank = await page.evaluate("""(model) => {
              const c = document.querySelector(`#charts .chart-card[data-model="${model}"] canvas.chart-latency`);
              const b = document.createElement('canvas'); b.width = c.width; b.height = c.height;
              return b.toDataURL(); }""", "effnetlite0")
            assert first and first != blank, "latency chart is empty"

            # more, slower traffic: the latency line moves
            await publish_access(nats_url, lattice_prefix, [{**request_event(i), "ms": 400.0 + i} for i in range(5)])
            await page.wait_for_function("window.waft.metrics.models.effnetlite0.total === 15", timeout=10_000)
            assert await page.evaluate(CANVAS_PIXELS, "effnetlite0") != first
            assert errors == []

        # /metrics on the same port: Prometheus text whose counters match what was sent
        async with aiohttp.ClientSession() as http, http.get(url.split("?", 1)[0] + "metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        requests = [s for s in families["waft_http_requests"].samples if s.name == "waft_http_requests_total"]
        assert sum(s.value for s in requests) == 15
        by_status = {s.labels["status"]: s.value for s in requests}
        assert by_status == {"200": 13, "500": 1, "503": 1}
        assert {s.labels["model"] for s in requests} == {"effnetlite0"}
        assert {s.labels["route"] for s in requests} == {"/{model}/classify"}
        build = families["waft_build_info"].samples
        assert [s.labels["version"] for s in build] == [__version__]
        errors_total = [s for s in families["waft_http_errors"].samples if s.name == "waft_http_errors_total"]
        assert sum(s.value for s in errors_total) == 2
        histogram = families["waft_http_request_duration_seconds"].samples
        assert next(s.value for s in histogram if s.name.endswith("_count")) == 15
        inf_bucket = next(s.value for s in histogram if s.name.endswith("_bucket") and s.labels["le"] == "+Inf")
        assert inf_bucket == 15
        below_10ms = next(s.value for s in histogram if s.name.endswith("_bucket") and s.labels["le"] == "0.01")
        assert below_10ms == 3  # 4, 7 and 10 ms (buckets include their bound); the rest took longer
        instances = families["waft_actor_instances"].samples
        assert [s.value for s in instances if s.labels["name"] == "echo"] == [1]
        assert [s.value for s in families["waft_provider_restarts"].samples
                if s.name == "waft_provider_restarts_total"] == [0]


async def test_public_dashboard_wants_the_token_in_the_browser(nats_url, lattice_prefix, browser):
    """A dashboard marked public (as on 0.0.0.0) serves the page only to the URL carrying the token."""
    async with application(nats_url, lattice_prefix) as (_, actor_id, _provider), \
            serving_dashboard(nats_url, lattice_prefix, public=True, token="browser-secret") as url:
        assert url.endswith("?token=browser-secret")
        bare = url.split("?", 1)[0]
        context = await browser.new_context()
        try:
            page = await context.new_page()
            response = await page.goto(bare, timeout=15_000)
            assert response.status == 401
        finally:
            await context.close()
        async with open_page(browser, url) as (page, errors):  # the token moves into a cookie
            assert page.url == bare
            await page.locator(f'#actors tr[data-actor-id="{actor_id}"]').wait_for(timeout=5_000)
            assert errors == []


async def test_real_http_through_the_httpserver_provider_moves_the_page(nats_url, lattice_prefix, browser):
    """Requests through the httpserver provider publish access events; the page and /metrics count them."""
    async with running_host(nats_url=nats_url, prefix=lattice_prefix) as host, \
            serving_dashboard(nats_url, lattice_prefix) as url:
        pool = await host.start_actor(str(built_actor("echo")))
        provider = await host.start_provider("python:waft_httpserver")
        port = free_port()
        async with CtlClient.connect(nats_url, lattice_prefix) as ctl:
            await ctl.put_link(pool.public_key, provider.public_key, "wasmcloud:httpserver", "default",
                               {"address": f"127.0.0.1:{port}"})
        api = f"http://127.0.0.1:{port}"
        async with open_page(browser, url) as (page, errors), aiohttp.ClientSession() as http:
            async def answering() -> bool:
                try:
                    async with http.get(f"{api}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as response:
                        return response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    return False

            assert await eventually(answering, timeout=20), "httpserver provider never answered"
            for i in range(10):
                async with http.post(f"{api}/effnetlite0/matches?k={i}", data=b"x" * i) as response:
                    assert response.status == 200
            await page.wait_for_function("window.waft.metrics && window.waft.metrics.models.effnetlite0 "
                                         "&& window.waft.metrics.models.effnetlite0.total === 10", timeout=10_000)
            assert await page.locator('#charts .chart-card[data-model="effnetlite0"] .stat-total').inner_text() == "10"
            assert errors == []
        async with aiohttp.ClientSession() as http, http.get(url.split("?", 1)[0] + "metrics") as response:
            text = await response.text()
        samples = [s for f in text_string_to_metric_families(text) if f.name == "waft_http_requests"
                   for s in f.samples if s.name == "waft_http_requests_total"]
        assert {(s.labels["model"], s.labels["route"], s.labels["method"]): s.value for s in samples} == {
            ("-", "/healthz", "GET"): pytest.approx(sum(s.value for s in samples if s.labels["model"] == "-")),
            ("effnetlite0", "/{model}/matches", "POST"): 10}
