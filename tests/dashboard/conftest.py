"""Fixtures of the dashboard tests: a dashboard served in the test's loop, and a real headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_READY = CHROMIUM.exists()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@contextlib.asynccontextmanager
async def serving_dashboard(nats_url: str, prefix: str, **options: object) -> AsyncIterator[str]:
    """`serve_dashboard` on a free loopback port; yields the URL it announces and stops it on exit."""
    from waft.dashboard.server import serve_dashboard

    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_dashboard(nats_url, prefix, str(options.pop("host", "127.0.0.1")), 0,
                                               on_ready=ready.set_result, stop=stop, **options))  # type: ignore[arg-type]
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what stopped it
        assert ready in done, "dashboard not ready within 30 s"
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def open_page(browser, url: str) -> AsyncIterator[tuple[object, list[str]]]:
    """A page on the dashboard, with every console error and uncaught exception collected."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1300})
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    try:
        await page.goto(url, wait_until="load", timeout=15_000)
        await page.wait_for_function("window.waft && window.waft.connected && window.waft.state !== null",
                                     timeout=10_000)
        yield page, errors
    finally:
        await context.close()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """Debian's chromium driven by playwright (no browser download); closed with its driver after the test."""
    if not BROWSER_READY or not _playwright_available():
        pytest.skip("headless browser tests need Debian's chromium (/usr/bin/chromium) and playwright")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                                                   timeout=30_000)
        try:
            yield browser
        finally:
            await asyncio.wait_for(browser.close(), 15)


def _playwright_available() -> bool:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return True
