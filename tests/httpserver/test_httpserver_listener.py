"""The listener against stand-in actors, in-process: limits, error mapping, CORS, access log, link refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import msgpack
import pytest
from httpserver_support import free_port
from waft_httpserver.accesslog import LOGGER_NAME
from waft_httpserver.listener import Invoke, Listener, ListenerError
from waft_httpserver.provider import HttpServerProvider
from waft_httpserver.settings import load_settings

from waft.lattice.host_data import HostData
from waft.lattice.rpc import RpcError
from waft.lattice.types import LinkDefinition
from waft.provider import ProviderError

pytestmark = pytest.mark.timeout(60)
ACTOR = "M" + "A" * 55


def ok(body: bytes = b"ok", status: int = 200, header: dict | None = None) -> bytes:
    return msgpack.packb({"statusCode": status, "header": header or {}, "body": body})


@contextlib.asynccontextmanager
async def listening(invoke: Invoke, **values: str) -> AsyncIterator[tuple[Listener, aiohttp.ClientSession]]:
    listener = Listener(ACTOR, load_settings({"address": "127.0.0.1:0", **values}, env={}), invoke)
    await listener.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{listener.port}") as session:
            yield listener, session
    finally:
        await listener.close()


class Lines(logging.Handler):
    """Collects the access log (its logger does not propagate, so caplog does not see it)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture()
def access_lines():
    handler = Lines()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


async def test_concurrency_limit_answers_503_at_once():
    release, both_in = asyncio.Event(), asyncio.Event()
    entered = 0

    async def slow(payload: bytes, timeout: float) -> bytes:
        nonlocal entered
        entered += 1
        if entered == 2:
            both_in.set()
        await release.wait()
        return ok()

    async with listening(slow, max_concurrent="2") as (listener, session):
        first = [asyncio.create_task(session.get("/")) for _ in range(2)]
        await asyncio.wait_for(both_in.wait(), 10)
        assert listener.in_flight == 2
        async with session.get("/third") as response:
            assert response.status == 503 and response.headers["Retry-After"] == "1"
            assert json.loads(await response.read())["error"] == "too many requests"
        release.set()
        for task in first:
            response = await task
            assert response.status == 200
            response.release()
        assert entered == 2 and listener.in_flight == 0


@pytest.mark.parametrize(("error", "status", "name"), [
    (RpcError("nobody", no_responders=True), 503, "actor not running"),
    (RpcError("slow", timeout=True), 504, "actor timed out"),
    (RpcError("lost", connection_lost=True), 503, "lattice connection lost"),
    (RpcError("actor trapped: wasm trap: wasm `unreachable` instruction executed"), 500, "actor error"),
])
async def test_rpc_errors_become_json_errors(error, status, name):
    async def failing(payload: bytes, timeout: float) -> bytes:
        raise error

    async with listening(failing) as (_, session), session.post("/", data=b"x") as response:
        assert response.status == status
        body = json.loads(await response.read())
    assert body["error"] == name and body["detail"]
    if status == 500:
        assert "unreachable" in body["detail"]


async def test_hung_invoke_is_cut_by_the_safety_timeout(monkeypatch):
    monkeypatch.setattr("waft_httpserver.listener.SAFETY_MARGIN_S", 0.05)

    async def hung(payload: bytes, timeout: float) -> bytes:
        await asyncio.Event().wait()
        return b""

    async with listening(hung, timeout_ms="50") as (_, session), session.get("/") as response:
        assert response.status == 504


@pytest.mark.parametrize("answer", [ok(status=700), b"\x93\x01\x02\x03", msgpack.packb({"body": 1})])
async def test_invalid_actor_responses_are_500_with_json(answer):
    async def bad(payload: bytes, timeout: float) -> bytes:
        return answer

    async with listening(bad) as (_, session), session.get("/") as response:
        assert response.status == 500
        assert json.loads(await response.read())["error"] == "invalid response from actor"


async def test_response_goes_back_as_is():
    async def actor(payload: bytes, timeout: float) -> bytes:
        request = msgpack.unpackb(payload)
        return msgpack.packb({"statusCode": 418, "body": "tea: " + request["path"],  # str body, as 0.x wrote
                              "header": {"X-Many": ["1", "2"], "Content-Type": ["text/plain"],
                                         "Content-Length": ["999"]}})

    async with listening(actor) as (_, session), session.get("/pot") as response:
        assert response.status == 418
        assert response.headers.getall("X-Many") == ["1", "2"]
        assert response.headers["Content-Type"] == "text/plain"
        assert await response.read() == b"tea: /pot"  # the actor's wrong Content-Length is not passed on


async def test_body_limit_before_and_while_reading():
    calls = 0

    async def actor(payload: bytes, timeout: float) -> bytes:
        nonlocal calls
        calls += 1
        return ok()

    async def chunks():
        yield b"a" * 60
        yield b"b" * 60

    async with listening(actor, max_body_bytes="100") as (_, session):
        async with session.post("/", data=b"z" * 100) as response:
            assert response.status == 200
        async with session.post("/", data=b"z" * 101) as response:
            assert response.status == 413
        async with session.post("/", data=chunks()) as response:
            assert response.status == 413
        async with session.post("/", data=b"z" * 101, headers={"Expect": "100-continue"}) as response:
            assert response.status == 413
    assert calls == 1


async def test_access_log_text_and_json(access_lines):
    async def actor(payload: bytes, timeout: float) -> bytes:
        return ok(b"12345")

    async with listening(actor) as (_, session), session.get("/t?x=1") as response:
        await response.read()
    async with listening(actor, log_format="json") as (_, session), session.post("/j") as response:
        await response.read()
    text, line = access_lines
    assert '"GET /t?x=1" 200 5 B' in text and " ms " in text
    entry = json.loads(line)
    assert entry["method"] == "POST" and entry["path"] == "/j" and entry["status"] == 200 and entry["bytes"] == 5
    assert isinstance(entry["ms"], float) and entry["actor"] == ACTOR and entry["msg"] == "access"


async def test_cors_preflight_and_origins():
    async def actor(payload: bytes, timeout: float) -> bytes:
        return ok()

    cors = json.dumps({"cors": {"allowed_origins": ["https://app.example"], "exposed_headers": ["x-id"]}})
    async with listening(actor, config_json=cors) as (_, session):
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"}
        async with session.options("/", headers=preflight) as response:
            assert response.status == 204
            assert "PUT" in response.headers["Access-Control-Allow-Methods"]
            assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with session.get("/", headers={"Origin": "https://app.example"}) as response:
            assert response.status == 200 and response.headers["Access-Control-Expose-Headers"] == "x-id"
        async with session.get("/", headers={"Origin": "https://evil.example"}) as response:
            assert response.status == 403


async def test_taken_port_is_a_listener_error_and_a_refused_link():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        listener = Listener(ACTOR, load_settings({"port": str(port)}, env={}), lambda p, t: asyncio.sleep(0, b""))
        with pytest.raises(ListenerError, match=f"cannot listen on 127.0.0.1:{port}: already in use"):
            await listener.start()

        provider = HttpServerProvider(HostData("N" * 56, "p", "default", "127.0.0.1:4222", "V" * 56, "", []))
        link = LinkDefinition(ACTOR, "V" * 56, "wasmcloud:httpserver", "default", {"address": f"127.0.0.1:{port}"})
        with pytest.raises(ProviderError, match=f"127.0.0.1:{port}: already in use.*link from {ACTOR} not served"):
            await provider.put_link(link)
        free = free_port()
        await provider.put_link(LinkDefinition("M" + "B" * 55, "V" * 56, "wasmcloud:httpserver", "default",
                                               {"address": f"127.0.0.1:{free}"}))
        try:
            assert (await provider.health())[1] == f"healthy: serving http://127.0.0.1:{free}"
            with pytest.raises(ProviderError, match="already in use by this provider's link"):
                await provider.put_link(LinkDefinition(ACTOR, "V" * 56, "wasmcloud:httpserver", "default",
                                                       {"address": f"0.0.0.0:{free}"}))
            with pytest.raises(ProviderError, match="invalid address"):
                await provider.put_link(LinkDefinition(ACTOR, "V" * 56, "wasmcloud:httpserver", "default",
                                                       {"address": "nowhere"}))
        finally:
            await provider.on_shutdown()
        assert provider.listeners == {}


async def test_tls_listener_serves_https(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    process = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await asyncio.wait_for(process.wait(), 30) == 0

    async def actor(payload: bytes, timeout: float) -> bytes:
        return ok(b"secure")

    tls = json.dumps({"tls": {"cert_file": str(cert), "priv_key_file": str(key)}})
    listener = Listener(ACTOR, load_settings({"address": "127.0.0.1:0", "config_json": tls}, env={}), actor)
    await listener.start()
    try:
        assert listener.address.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as session, session.get(f"{listener.address}/", ssl=context) as response:
            assert await response.read() == b"secure"
    finally:
        await listener.close()

    key.write_text("not a key")
    broken = Listener(ACTOR, load_settings({"address": "127.0.0.1:0", "config_json": tls}, env={}), actor)
    with pytest.raises(ListenerError, match="cannot load the TLS certificate or key"):
        await broken.start()
