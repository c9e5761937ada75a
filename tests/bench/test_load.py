"""The open-loop load generator against a local aiohttp server whose behaviour the test controls."""

from __future__ import annotations

import asyncio

from aiohttp import web

from waft.loadgen import load_bodies, open_loop


async def serve(handler) -> tuple[web.AppRunner, str]:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/m"


async def test_counts_statuses_and_bodies():
    seen: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(status=200 if len(seen) % 4 else 503)

    runner, url = await serve(handler)
    try:
        result = await open_loop(url, rate=40, duration=1.0, bodies=[b"a", b"bb"])
    finally:
        await runner.cleanup()
    assert result.sent == 40 == len(seen)
    assert result.statuses["503"] == 10 and result.ok == 30 and result.errors == 10
    assert seen.count(b"a") == 20 and seen.count(b"bb") == 20
    assert len(result.latencies) == 30


async def test_a_stalled_request_does_not_hold_back_the_others():
    """Open loop: the first request is held until the last one has arrived, which a closed loop
    (send, wait, send) could never do; all of them complete."""
    arrived = 0
    all_in = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 1:
            await asyncio.wait_for(all_in.wait(), 5)
        elif arrived == 20:
            all_in.set()
        return web.Response(text="ok")

    runner, url = await serve(handler)
    try:
        result = await open_loop(url, rate=20, duration=1.0, bodies=[b""], timeout=8)
    finally:
        await runner.cleanup()
    assert result.sent == 20 and result.ok == 20, result.statuses


async def test_timeouts_are_counted():
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    runner, url = await serve(handler)
    try:
        result = await open_loop(url, rate=5, duration=0.4, bodies=[b""], timeout=0.2)
    finally:
        await runner.cleanup()
    assert result.statuses["timeout"] == result.sent == 2 and result.ok == 0


def test_photo_bodies(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"J")
    (tmp_path / "b.png").write_bytes(b"P")
    (tmp_path / "notes.txt").write_text("x")
    assert load_bodies(tmp_path) == [b"J", b"P"]
    empty = tmp_path / "empty"
    empty.mkdir()
    import pytest

    with pytest.raises(ValueError, match=r"no \.jpg"):
        load_bodies(empty)
