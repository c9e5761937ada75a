"""One client address must not take the listener from the others: its requests in flight and its body bytes
have their own limits (429, Retry-After), and while a lighter client wants the actor, a heavier one may have
only `max_client_active` calls there, the rest waiting behind its own.

Before these limits one client could fill `max_concurrent` or the whole bodies budget (everyone else 503), and
two back-to-back streams of slow-to-decode images kept every pre-processor instance busy. The attacker here
connects from 127.0.0.2, the ordinary client from 127.0.0.1: two clients, as the listener tells them apart.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import msgpack
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "httpserver"))
from listener_support import listening
from waft_httpserver.admission import USAGE_CLIENTS, Admission, ClientLimits, Refused
from waft_httpserver.settings import (
    DEFAULT_MAX_CLIENT_ACTIVE,
    DEFAULT_MAX_CLIENT_ACTOR_BURST_MS,
    DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S,
    DEFAULT_MAX_CLIENT_BODIES_BYTES,
    DEFAULT_MAX_CLIENT_CONCURRENT,
    DEFAULT_MAX_CLIENT_WAIT_MS,
    load_settings,
)

from waft.provider.link_values import SettingsError

pytestmark = pytest.mark.timeout(60)
ATTACKER, ORDINARY = "127.0.0.2", "127.0.0.1"


class HeldActor:
    """A stand-in actor that answers a path only once the test releases it: what is at the actor is known."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def release(self, path: str) -> None:
        self.gates.setdefault(path, asyncio.Event()).set()

    async def __call__(self, payload: bytes, timeout: float) -> bytes:
        path = msgpack.unpackb(payload)["path"]
        self.seen.append(path)
        await self.gates.setdefault(path, asyncio.Event()).wait()
        return msgpack.packb({"statusCode": 200, "header": {}, "body": path.encode()})


async def echo(payload: bytes, timeout: float) -> bytes:
    return msgpack.packb({"statusCode": 200, "header": {}, "body": b"ok"})


def session_from(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True))


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(1000):  # a bound that only turns a hang into a failure
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def slow_body(port: int, declared: int) -> asyncio.StreamWriter:
    """From the attacker: a request that declares `declared` bytes, sends one, and waits."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    writer.write(f"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\nx".encode())
    await writer.drain()
    return writer


async def test_one_client_over_its_requests_or_bytes_gets_429_and_others_are_served() -> None:
    async with listening(echo, max_client_concurrent="2", max_client_bodies_bytes="1000",
                         max_bodies_bytes="100000", body_timeout_ms="20000") as listener:
        url = f"http://127.0.0.1:{listener.port}/m/matches"
        held = [await slow_body(listener.port, 400), await slow_body(listener.port, 400)]
        await until(lambda: listener.admission.in_flight[ATTACKER] == 2, "two attacker requests in flight")
        async with session_from(ATTACKER) as attacker, session_from(ORDINARY) as ordinary:
            async with attacker.put(url, data=b"y") as response:  # its third request
                assert response.status == 429 and response.headers["Retry-After"] == "1"
                assert "max_client_concurrent 2" in await response.text()
            async with ordinary.put(url, data=b"y" * 900) as response:  # another client: served
                assert response.status == 200
            held.pop().close()  # one slow body gone: 400 of the attacker's 1000 bytes still held
            await until(lambda: listener.admission.in_flight[ATTACKER] == 1, "the closed body released")
            assert listener.admission.body_bytes[ATTACKER] == 400
            async with attacker.put(url, data=b"y" * 700) as response:  # 400 + 700 > 1000
                assert response.status == 429
                assert "max_client_bodies_bytes 1000" in await response.text()
            async with attacker.put(url, data=b"y" * 500) as response:  # within its share
                assert response.status == 200
            async with ordinary.put(url, data=b"y" * 990) as response:  # the others' bytes are theirs
                assert response.status == 200
        held.pop().close()
        await until(lambda: not listener.admission.in_flight and not listener.admission.body_bytes,
                    "every count back to nothing")


async def test_a_heavy_client_waits_behind_its_own_calls_while_a_lighter_one_is_served() -> None:
    actor = HeldActor()
    async with listening(actor) as listener, session_from(ATTACKER) as attacker, \
            session_from(ORDINARY) as ordinary:
        base = f"http://127.0.0.1:{listener.port}"

        async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, str]:
            async with session.get(base + path) as response:
                return response.status, await response.text()

        async with asyncio.TaskGroup() as tasks:
            answers = [tasks.create_task(get(attacker, "/a1"))]
            await until(lambda: actor.seen == ["/a1"], "a1 at the actor")
            answers.append(tasks.create_task(get(attacker, "/a2")))  # alone, a client is not held back
            await until(lambda: actor.seen == ["/a1", "/a2"], "a2 at the actor")
            answers.append(tasks.create_task(get(ordinary, "/b1")))
            await until(lambda: "/b1" in actor.seen, "b1 at the actor")
            answers.append(tasks.create_task(get(attacker, "/a3")))  # heavier, and a lighter client is there
            await until(lambda: listener.admission.waiting == 1, "a3 waiting")
            answers.append(tasks.create_task(get(ordinary, "/b2")))  # the lighter client is never held back
            await until(lambda: "/b2" in actor.seen, "b2 at the actor")
            assert "/a3" not in actor.seen

            actor.release("/a1")
            assert await answers[0] == (200, "/a1")
            assert listener.admission.waiting == 1 and "/a3" not in actor.seen  # still a lighter client there
            actor.release("/b1")
            actor.release("/b2")
            assert await answers[2] == (200, "/b1") and await answers[4] == (200, "/b2")
            await until(lambda: "/a3" in actor.seen, "a3 going once the attacker is alone")
            actor.release("/a2")
            actor.release("/a3")
        assert [a.result() for a in answers] == [(200, p) for p in ("/a1", "/a2", "/b1", "/a3", "/b2")]
        assert actor.seen == ["/a1", "/a2", "/b1", "/b2", "/a3"]
        assert listener.admission.active_total == 0 and not listener.admission.active


async def test_a_cancelled_wait_gives_its_turn_up() -> None:
    """A request cancelled while waiting (its deadline passed) leaves the queue, and no count is left behind."""
    admission = Admission(ClientLimits(32, 1 << 20, 1))
    done = asyncio.Event()
    inside: list[str] = []

    async def call(client: str, name: str) -> None:
        async with admission.at_actor(client):
            inside.append(name)
            await done.wait()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(call(ATTACKER, "a1"))
        await until(lambda: inside == ["a1"], "a1 inside")
        tasks.create_task(call(ORDINARY, "b1"))
        await until(lambda: inside == ["a1", "b1"], "b1 inside")
        waiting = tasks.create_task(call(ATTACKER, "a2"))
        await until(lambda: admission.waiting == 1, "a2 waiting")
        waiting.cancel()
        await until(lambda: admission.waiting == 0, "the turn given up")
        done.set()
    assert inside == ["a1", "b1"] and admission.active_total == 0 and not admission.active


async def test_what_is_remembered_of_clients_is_bounded() -> None:
    """An attacker with many addresses cannot grow the listener's memory: counts go when a client has nothing
    in flight, and usage is kept for a bounded number of clients (the lightest idle ones forgotten first)."""
    admission = Admission(ClientLimits(32, 1 << 20, 1))
    for i in range(USAGE_CLIENTS * 2):
        client = f"10.0.{i >> 8}.{i & 255}"
        with admission.request(client), admission.body(client, 10):
            async with admission.at_actor(client):
                pass
        assert len(admission._usage) <= USAGE_CLIENTS
    assert not admission.in_flight and not admission.body_bytes and not admission.active and not admission._started
    assert client in admission._usage  # the latest is remembered


def test_per_client_limits_have_defaults_settings_and_link_values() -> None:
    s = load_settings({}, env={})
    assert (s.max_client_concurrent, s.max_client_bodies_bytes, s.max_client_active) == (
        DEFAULT_MAX_CLIENT_CONCURRENT, DEFAULT_MAX_CLIENT_BODIES_BYTES, DEFAULT_MAX_CLIENT_ACTIVE) == (
        64, 64 * 1024 * 1024, 1)
    env = {"WAFT_HTTP_MAX_CLIENT_CONCURRENT": "5", "WAFT_HTTP_MAX_CLIENT_BODIES_BYTES": "2m",
           "WAFT_HTTP_MAX_CLIENT_ACTIVE": "3"}
    s = load_settings({}, env=env)
    assert (s.max_client_concurrent, s.max_client_bodies_bytes, s.max_client_active) == (5, 2 << 20, 3)
    s = load_settings({"MAX_CLIENT_CONCURRENT": "7", "max_client_bodies_bytes": "1k", "max_client_active": "2"},
                      env=env)
    assert (s.max_client_concurrent, s.max_client_bodies_bytes, s.max_client_active) == (7, 1024, 2)
    for values in ({"max_client_concurrent": "0"}, {"max_client_active": "many"},
                   {"max_client_bodies_bytes": "lots"}):
        with pytest.raises(SettingsError, match="max_client_"):
            load_settings(values, env={})


class Clock:
    """The admission's clock, moved by the test: how much actor time a call took is then exact, not measured."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def share_limits(**kw: float) -> ClientLimits:
    """Only the actor-time share holds anyone back here (`max_client_active` out of the way)."""
    return ClientLimits(64, 1 << 20, 100, **{"client_actor_rate": 0.25, "client_actor_burst_s": 1.0,
                                             "max_client_wait_s": 5.0, **kw})


async def test_a_client_over_its_actor_time_waits_while_a_client_within_its_share_is_there_and_not_alone() -> None:
    clock = Clock()
    admission = Admission(share_limits(), clock=clock)
    inside: list[str] = []
    gates: dict[str, asyncio.Event] = {}

    async def call(client: str, name: str, took: float = 0.0) -> None:
        async with admission.at_actor(client):
            inside.append(name)
            if name in gates:
                await gates[name].wait()
            clock.now += took

    async def ordinary_passes(seconds: float) -> None:
        """The ordinary client's quick calls, one every 0.5 s of the clock: each must go at once."""
        for _ in range(int(seconds / 0.5)):
            clock.now += 0.5
            await call(ORDINARY, f"b{len(inside)}")

    # alone, a client may use the actor all the time: 3 s of it in each of two calls, and nothing is held
    await call(ATTACKER, "a1", took=3.0)
    await call(ATTACKER, "a2", took=3.0)
    assert admission.tokens(ATTACKER) == 0  # what it used alone was no one's loss

    await ordinary_passes(0.5)
    async with asyncio.TaskGroup() as tasks:
        gates["a3"] = asyncio.Event()
        tasks.create_task(call(ATTACKER, "a3"))  # not in debt: goes, though the ordinary client is there
        await until(lambda: "a3" in inside, "a3 at the actor")
        await ordinary_passes(1.5)  # a3 at the actor for 1.5 s meanwhile
        gates["a3"].set()
    assert admission.tokens(ATTACKER) == pytest.approx(-1.0)  # 2 s since a2 refilled 0.5 s; 1.5 s used

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(call(ATTACKER, "a4"))
        await until(lambda: admission.waiting == 1, "a4 waiting for its debt to be paid")
        await ordinary_passes(3.5)  # 1 s at 0.25 actor-s/s takes 4 s: not yet
        await asyncio.sleep(0.2)  # several looks at the waits (every 50 ms); only the clock lets a4 go
        assert "a4" not in inside and admission.waiting == 1
        await ordinary_passes(0.5)
        await until(lambda: "a4" in inside, "a4 going once its debt is paid")
    assert inside[:3] == ["a1", "a2", "b2"] and inside[-1] == "a4" and inside.count("a4") == 1
    assert not admission.active and admission.waiting == 0


async def test_a_debt_longer_than_the_wait_is_refused_and_failed_calls_count() -> None:
    clock = Clock()
    admission = Admission(share_limits(), clock=clock)
    with pytest.raises(RuntimeError):  # a call that fails is charged its time at the actor all the same
        async with admission.at_actor(ATTACKER):
            for _ in range(6):  # 3 s at the actor while the ordinary client comes every 0.5 s
                clock.now += 0.5
                async with admission.at_actor(ORDINARY):
                    pass
            raise RuntimeError("the actor refused it")
    assert admission.tokens(ATTACKER) == pytest.approx(-2.0)  # 1 s of burst, 3 s used: 8 s to pay at 0.25
    with pytest.raises(Refused) as refused:
        async with admission.at_actor(ATTACKER):
            raise AssertionError("went to the actor in debt")
    assert refused.value.retry_after == 8 and "max_client_actor_ms_per_s 250" in refused.value.detail
    clock.now += 1.0  # the ordinary client gone a second: the attacker is alone, and not held to the share
    async with admission.at_actor(ATTACKER):
        pass


async def test_over_share_gets_429_with_retry_after_over_http_while_others_are_served() -> None:
    actor = HeldActor()
    async with listening(actor, max_client_actor_ms_per_s="100", max_client_actor_burst_ms="500",
                         max_client_wait_ms="1000") as listener, session_from(ATTACKER) as attacker, \
            session_from(ORDINARY) as ordinary:
        clock = Clock()
        listener.admission.clock = clock
        base = f"http://127.0.0.1:{listener.port}"

        async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, str, str]:
            actor.release(path)
            async with session.get(base + path) as response:
                return response.status, await response.text(), response.headers.get("Retry-After", "")

        async with asyncio.TaskGroup() as tasks:
            a1 = tasks.create_task(attacker.get(base + "/a1"))
            await until(lambda: "/a1" in actor.seen, "a1 at the actor")
            for i in range(5):  # 2.5 s at the actor while the ordinary client comes every 0.5 s
                clock.now += 0.5
                assert (await get(ordinary, f"/b{i}"))[0] == 200
            actor.release("/a1")
            async with await a1 as response:
                assert response.status == 200
        status, text, retry_after = await get(attacker, "/a2")  # 2 s in debt: 20 s at 100 ms/s
        assert (status, retry_after) == (429, "20") and "too much actor time for this client" in text
        assert "/a2" not in actor.seen
        assert (await get(ordinary, "/b5"))[0] == 200  # the other client is served
        clock.now += 1.0  # the ordinary client gone: the attacker is alone, and served
        assert (await get(attacker, "/a3"))[0] == 200


def test_the_actor_time_share_has_defaults_settings_and_link_values() -> None:
    s = load_settings({}, env={})
    assert (s.max_client_actor_ms_per_s, s.max_client_actor_burst_ms, s.max_client_wait_ms) == (
        DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S, DEFAULT_MAX_CLIENT_ACTOR_BURST_MS, DEFAULT_MAX_CLIENT_WAIT_MS) == (
        250, 1000, 5000)
    env = {"WAFT_HTTP_MAX_CLIENT_ACTOR_MS_PER_S": "100", "WAFT_HTTP_MAX_CLIENT_ACTOR_BURST_MS": "300",
           "WAFT_HTTP_MAX_CLIENT_WAIT_MS": "700"}
    s = load_settings({}, env=env)
    assert (s.max_client_actor_ms_per_s, s.max_client_actor_burst_ms, s.max_client_wait_ms) == (100, 300, 700)
    s = load_settings({"MAX_CLIENT_ACTOR_MS_PER_S": "500", "max_client_actor_burst_ms": "2000",
                       "max_client_wait_ms": "50"}, env=env)
    assert (s.max_client_actor_ms_per_s, s.max_client_actor_burst_ms, s.max_client_wait_ms) == (500, 2000, 50)
    for values in ({"max_client_actor_ms_per_s": "0"}, {"max_client_wait_ms": "soon"}):
        with pytest.raises(SettingsError, match="max_client_"):
            load_settings(values, env={})
