"""The dashboard without a browser: the lattice model, the metrics, the token guard, the CLI, the access feed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import aiohttp
import pytest
from conftest import serving_dashboard
from prometheus_client.parser import text_string_to_metric_families
from waft_httpserver.accesslog import BATCH_MAX, MAX_SENDING, AccessEntry, AccessPublisher

from waft.dashboard.metrics import MAX_LABEL_VALUES, OTHER, AccessMetrics, percentile, route_of
from waft.dashboard.server import TOKEN_COOKIE, DashboardConfig, is_loopback
from waft.dashboard.state import LatticeState
from waft.interfaces.httpserver import AccessRecord, BadAccessRecord, model_of
from waft.interfaces.mlinference import ModelState, ModelStatus, RetryInfo
from waft.lattice import events
from waft.lattice.events import Event, parse_event
from waft.lattice.health import HealthCheckResponse

pytestmark = pytest.mark.timeout(120)
HOST = "N" + "H" * 55
ACTOR = "M" + "A" * 55
PROVIDER = "V" + "P" * 55


def ev(name: str, data: dict, source: str = HOST) -> Event:
    """An event as the dashboard receives it: encoded by a host, parsed by the one parser."""
    return parse_event(Event(name, data).encode(source=source))


def received(event: Event, source: str = HOST) -> Event:
    return parse_event(event.encode(source=source))


def health(models: list[ModelStatus], healthy: bool = True) -> HealthCheckResponse:
    return HealthCheckResponse(healthy, "a sentence nobody parses", {"models": [m.to_wire() for m in models]})


# ------------------------------------------------------------------ lattice model
def test_events_build_and_tear_down_the_model():
    state = LatticeState("p")
    state.apply_event(ev("host_started", {"labels": {"zone": "a"}, "friendly_name": "h1"}))
    claims = {"name": "echo", "caps": ["wasmcloud:httpserver"], "issuer": "A" * 56, "revision": 3,
              "call_alias": "waft/echo", "version": "1.0", "tags": []}
    for instance in ("i1", "i2"):
        state.apply_event(ev("actor_started", {"public_key": ACTOR, "image_ref": "/a/echo_s.wasm",
                                               "instance_id": instance, "annotations": {}, "claims": claims}))
    state.apply_event(ev("actor_started", {"public_key": ACTOR, "instance_id": "i2", "claims": claims}))  # repeat
    snap = state.snapshot()
    actor = snap["hosts"][HOST]["actors"][0]
    assert snap["hosts"][HOST]["labels"] == {"zone": "a"} and actor["name"] == "echo"
    assert [i["instance_id"] for i in actor["instances"]] == ["i1", "i2"]
    assert snap["claims"][ACTOR]["caps"] == "wasmcloud:httpserver" and snap["claims"][ACTOR]["rev"] == "3"

    state.apply_event(ev("provider_started", {"public_key": PROVIDER, "link_name": "default", "instance_id": "p1",
                                              "contract_id": "wasmcloud:mlinference", "image_ref": "python:m",
                                              "claims": {"name": "ML"}}))
    assert state.snapshot()["hosts"][HOST]["providers"][0]["status"] == "starting"
    loading = ModelStatus("effnetlite0", ModelState.LOADING, "efficientnet-lite0/0.1.0", graph_encoding="onnx")
    state.apply_event(received(events.health_check_passed(PROVIDER, "default", "wasmcloud:mlinference",
                                                          health([loading]))))
    prov = state.snapshot()["hosts"][HOST]["providers"][0]
    assert prov["status"] == "healthy" and prov["healthy"] is True
    state.set_bindle_models([{"name": "efficientnet-lite0", "version": "0.1.0", "id": "efficientnet-lite0/0.1.0",
                              "size": 100, "engine": "onnx"}, {"name": "other", "version": "1", "id": "other/1"}])
    merged = {m["name"]: m for m in state.models()}
    assert merged["efficientnet-lite0"]["status"] == "loading"
    assert merged["efficientnet-lite0"]["route"] == "effnetlite0" and merged["efficientnet-lite0"]["size"] == 100
    assert merged["other"]["status"] == "stored"

    # a crash keeps the provider listed as restarting; a stop removes it
    state.apply_event(ev("provider_stopped", {"public_key": PROVIDER, "link_name": "default",
                                              "reason": "exited with -9"}))
    assert state.snapshot()["hosts"][HOST]["providers"][0]["status"] == "restarting"
    state.apply_event(ev("provider_stopped", {"public_key": PROVIDER, "link_name": "default", "reason": "normal"}))
    assert state.snapshot()["hosts"][HOST]["providers"] == []
    assert {m["name"]: m["status"] for m in state.models()} == {"efficientnet-lite0": "stored", "other": "stored"}

    link = {"actor_id": ACTOR, "provider_id": PROVIDER, "link_name": "default", "contract_id": "c", "values": {}}
    state.apply_event(ev("linkdef_set", {"id": "x", **link}))
    assert state.snapshot()["links"] == [link]
    state.apply_event(ev("linkdef_deleted", {"id": "x", **link}))
    assert state.snapshot()["links"] == []

    state.apply_event(ev("actor_stopped", {"public_key": ACTOR, "instance_id": "i1"}))
    assert len(state.snapshot()["hosts"][HOST]["actors"][0]["instances"]) == 1
    state.apply_event(ev("actor_stopped", {"public_key": ACTOR, "instance_id": "i2"}))
    assert state.snapshot()["hosts"][HOST]["actors"] == []
    state.apply_event(ev("host_stopped", {"labels": {}}))
    assert state.snapshot()["hosts"] == {}
    assert [e["name"] for e in state.recent_events(3)] == ["actor_stopped", "actor_stopped", "host_stopped"]


def test_heartbeat_that_disagrees_marks_the_host_for_an_inventory():
    state = LatticeState("p")
    state.apply_inventory({"host_id": HOST, "labels": {}, "actors": [], "providers": []})
    state.apply_event(ev("host_heartbeat", {"actors": [], "providers": [], "uptime_seconds": 90, "version": "0.1"}))
    assert state.hosts_to_refresh == set()
    assert state.snapshot()["hosts"][HOST]["uptime_seconds"] >= 90
    state.apply_event(ev("host_heartbeat", {"actors": [{"public_key": ACTOR, "instance_id": "i9"}], "providers": []}))
    assert state.hosts_to_refresh == {HOST}
    # an event from a host never seen asks for its inventory too
    state.apply_event(ev("actor_stopped", {"public_key": ACTOR, "instance_id": "z"}, source="N" + "Z" * 55))
    assert "N" + "Z" * 55 in state.hosts_to_refresh


def test_model_states_come_from_health_details_never_the_message():
    """The inventory's details give the first picture; a health_check_status event (the flag did not flip)
    moves a model to ready; a retrying model stays one model; a message alone names no models."""
    ghost = ModelStatus("ghost", ModelState.FAILED, "no-such/1.0.0", "bindle no-such/1.0.0 not found",
                        "invalidModel")
    retrying = ModelStatus("mobilenetv2", ModelState.LOADING, "mobilenetv2/0.1.0", "attempt 1/3 failed, …",
                           retry=RetryInfo(1, 3, 2.0, "connection refused"))
    loading = ModelStatus("effnetlite0", ModelState.LOADING, "efficientnet-lite0/0.1.0")
    state = LatticeState("p")
    state.apply_inventory({"host_id": HOST, "actors": [], "providers": [
        {"id": PROVIDER, "link_name": "default", "contract_id": "wasmcloud:mlinference", "healthy": False,
         "health_message": "unhealthy: ready: phantom; retrying: mobilenetv2 (attempt 1/3 failed, retrying …)",
         "health_details": health([loading, retrying, ghost], healthy=False).details}]})
    state.set_bindle_models([{"name": "efficientnet-lite0", "version": "0.1.0", "id": "efficientnet-lite0/0.1.0",
                              "size": 10, "engine": "onnx"}])
    models = {m["name"]: m for m in state.models()}
    assert sorted(models) == ["efficientnet-lite0", "ghost", "mobilenetv2"]  # nothing from the sentence
    effnet = models["efficientnet-lite0"]
    assert effnet["status"] == "loading" and effnet["route"] == "effnetlite0" and effnet["size"] == 10
    assert (models["ghost"]["status"], models["ghost"]["reason"]) == ("failed", "bindle no-such/1.0.0 not found")
    assert models["mobilenetv2"]["status"] == "loading" and models["mobilenetv2"]["retry"]["attempts"] == 3

    ready = ModelStatus("effnetlite0", ModelState.READY, "efficientnet-lite0/0.1.0")
    state.apply_event(received(events.health_check_status(PROVIDER, "default", "wasmcloud:mlinference",
                                                          health([ready, ghost], healthy=False))))
    models = {m["name"]: m for m in state.models()}
    assert models["efficientnet-lite0"]["status"] == "ready" and models["efficientnet-lite0"]["reason"] == ""
    assert sorted(models) == ["efficientnet-lite0", "ghost"]
    prov = state.snapshot()["hosts"][HOST]["providers"][0]
    assert prov["status"] == "unhealthy" and prov["health_message"] == "a sentence nobody parses"


def test_a_report_whose_counters_alone_changed_updates_the_model_without_a_log_entry():
    """Under traffic a model server's counters change every health interval; those reports must reach the
    metrics but not push lifecycle events out of the 300-entry log. A changed model state still logs."""
    ready = ModelStatus("effnetlite0", ModelState.READY, "efficientnet-lite0/0.1.0")

    def report(count: int, models: list[ModelStatus]) -> HealthCheckResponse:
        base = health(models)
        return HealthCheckResponse(True, base.message, {**base.details, "stats": {"effnetlite0": {
            "inference_count": count, "execution_count": count}}})

    state = LatticeState("p")
    state.apply_inventory({"host_id": HOST, "actors": [], "providers": [
        {"id": PROVIDER, "link_name": "default", "contract_id": "wasmcloud:mlinference", "healthy": True,
         "health_message": "a sentence nobody parses", "health_details": report(1, [ready]).details}]})
    logged = len(state.events)
    for count in (5, 9):
        assert not state.apply_event(received(events.health_check_status(
            PROVIDER, "default", "wasmcloud:mlinference", report(count, [ready]))))
    assert len(state.events) == logged
    prov = state.snapshot()["hosts"][HOST]["providers"][0]
    assert prov["health_details"]["stats"]["effnetlite0"]["inference_count"] == 9  # the metrics see the latest

    loading = ModelStatus("effnetlite0", ModelState.LOADING, "efficientnet-lite0/0.1.0")
    assert state.apply_event(received(events.health_check_status(
        PROVIDER, "default", "wasmcloud:mlinference", report(9, [loading]))))
    assert len(state.events) == logged + 1 and state.events[-1]["name"] == "health_check_status"


def test_health_without_model_details_names_no_models():
    state = LatticeState("p")
    state.apply_inventory({"host_id": HOST, "actors": [], "providers": [
        {"id": PROVIDER, "link_name": "default", "contract_id": "wasmcloud:mlinference", "healthy": True,
         "health_message": "healthy: ready: effnetlite0, tiny; loading: mobilenetv2"}]})
    state.apply_event(ev("health_check_passed", {"public_key": PROVIDER, "link_name": "default",
                                                 "message": "healthy: ready: a, b"}))  # a 0.x host's event
    assert state.models() == [] and state.snapshot()["hosts"][HOST]["providers"][0]["status"] == "healthy"
    # a provider whose details are not model statuses keeps what it said last, and the page keeps going
    state.apply_event(received(events.health_check_status(PROVIDER, "default", "wasmcloud:mlinference", health(
        [ModelStatus("m", ModelState.READY)]))))
    state.apply_event(received(events.health_check_status(PROVIDER, "default", "wasmcloud:mlinference",
                                                          HealthCheckResponse(True, "", {"models": [3]}))))
    assert [(m["name"], m["status"]) for m in state.models()] == [("m", "ready")]


def test_one_parser_reads_every_event_the_host_builds():
    event = parse_event(events.provider_start_failed("python:nope", "default", "no module").encode(source=HOST))
    assert (event.kind, event.source, event.image_ref, event.error, event.link_name) == (
        "provider_start_failed", HOST, "python:nope", "no module", "default")
    cloud = json.loads(events.host_stopped({"a": "b"}).encode(source=HOST))
    assert cloud["type"] == "com.wasmcloud.lattice.host_stopped" and cloud["specversion"] == "1.0"
    assert cloud["source"] == HOST and cloud["datacontenttype"] == "application/json" and cloud["id"]
    passed = parse_event(json.dumps({"type": "com.wasmcloud.lattice.health_check_passed", "source": HOST,
                                     "data": {"public_key": PROVIDER, "link_name": "default"}}))
    assert passed.health == HealthCheckResponse(True) and passed.public_key == PROVIDER
    assert parse_event(json.dumps({"type": "x.y.custom_thing", "data": 3})).kind == "custom_thing"
    for bad in (b"{nope", b"[]", b'{"type": 3}'):
        with pytest.raises(ValueError):
            parse_event(bad)


# ------------------------------------------------------------------ metrics
def test_metrics_series_and_bounds():
    now = [1000.0]
    metrics = AccessMetrics(clock=lambda: now[0])
    for ms in (1, 2, 3, 4, 100):
        assert metrics.record({"method": "post", "path": "/m/matches?k=1", "status": 200, "bytes": 5, "ms": ms,
                               "model": "m"})
    now[0] = 1001.5
    assert metrics.record({"path": "/m", "status": 500, "ms": 7, "model": "m"})
    for bad in ({"path": "/x"}, {"path": "/x", "status": 99}, {"path": "/x", "status": 200, "ms": "nan"}, [], "x"):
        assert not metrics.record(bad)
    summary = metrics.summary(span=10)
    m = summary["models"]["m"]
    assert m["total"] == 6 and m["errors"] == 1
    points = {p["t"]: p for p in m["points"]}
    assert points[1000]["rps"] == 5 and points[1000]["p50"] == 3 and points[1000]["p95"] == 100
    assert points[1001]["rps"] == 1 and points[1001]["errors"] == 1
    assert len(m["points"]) == 10 and metrics.active()
    now[0] = 2000
    assert not metrics.active()

    text = __import__("prometheus_client").generate_latest(metrics.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert sum(s.value for s in families["waft_http_requests"].samples if s.name.endswith("_total")) == 6
    assert sum(s.value for s in families["waft_dashboard_access_events_rejected"].samples
               if s.name.endswith("_total")) == 5

    for i in range(MAX_LABEL_VALUES + 5):  # a scan of random paths cannot grow the registry without end
        metrics.record({"path": f"/scan{i}", "status": 404, "ms": 1, "model": f"scan{i}"})
    assert OTHER in metrics.series and len(metrics.series) == MAX_LABEL_VALUES + 1


def test_route_and_percentile():
    assert route_of("/effnetlite0/matches?k=3", "effnetlite0") == "/{model}/matches"
    assert route_of("/effnetlite0/mnist/matches", "effnetlite0") == "/{model}/mnist/matches"
    assert route_of("/v2/models/m/infer", "m") == "/v2/models/{model}/infer"
    assert route_of("/v2/models/m/ready", "m") == "/v2/models/{model}/ready"  # not the infer series
    assert route_of("/v2/models/m/versions/3/infer", "m") == "/v2/models/{model}/versions/{version}/infer"
    assert route_of("/v2/models/models", "models") == "/v2/models/{model}"
    assert route_of("/healthz") == "/healthz" and route_of("/v2/health/ready") == "/v2/health/ready"
    assert route_of("/" + "/".join("abcdefghij")) == "/a/b/c/d/e/f"  # bounded depth
    assert route_of("") == "/"
    assert percentile([], 0.5) == 0
    assert percentile([1, 2, 3, 4], 0.5) == 2 and percentile([1, 2, 3, 4], 0.95) == 4


# ------------------------------------------------------------------ the access feed of the httpserver provider
async def test_access_publisher_sends_each_interval_as_one_message_and_never_raises():
    sent: list[tuple[str, bytes]] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append((subject, data))

    async def broken(subject: str, data: bytes) -> None:
        raise ConnectionError("NATS is gone")

    entries = [AccessEntry("POST", f"/effnetlite0/matches?k={k}", 200, 321, 12.34567, "127.0.0.1", "http://x", ACTOR)
               for k in range(3)]
    publisher = AccessPublisher(publish, "waft.access.p", batch_ms=20)
    failing = AccessPublisher(broken, "waft.access.p", batch_ms=0)
    for entry in entries:
        publisher(entry)
        failing(entry)
    assert sent == []  # nothing before the interval ends
    await publisher.flush()
    await failing.flush()
    assert [(s, json.loads(d)) for s, d in sent] == [("waft.access.p", [{
        "method": "POST", "path": f"/effnetlite0/matches?k={k}", "status": 200, "bytes": 321, "ms": 12.346,
        "model": "effnetlite0"} for k in range(3)])]
    assert failing.dropped == 3
    records, bad = AccessRecord.decode_many(sent[0][1])
    assert [r.model for r in records] == ["effnetlite0"] * 3 and bad == 0
    assert model_of("/v2/models/resnet/infer") == "resnet"
    assert model_of("/healthz") == model_of("/models") == model_of("/") == model_of("/v2/health/ready") == ""


async def test_a_full_batch_goes_at_once_and_a_slow_nats_drops_whole_batches():
    sent: list[bytes] = []
    stuck = asyncio.Event()

    async def slow(subject: str, data: bytes) -> None:
        sent.append(data)
        await stuck.wait()

    publisher = AccessPublisher(slow, "waft.access.p", batch_ms=60_000)
    entry = AccessEntry("GET", "/effnetlite0/matches", 200, 1, 1.0, "127.0.0.1", "http://x", ACTOR)
    for _ in range(BATCH_MAX * (MAX_SENDING + 2)):
        publisher(entry)
    await asyncio.sleep(0)  # the sends start
    assert len(sent) == MAX_SENDING and all(len(json.loads(d)) == BATCH_MAX for d in sent)
    assert publisher.dropped == 2 * BATCH_MAX
    stuck.set()
    await publisher.flush()
    with pytest.raises(ValueError, match="0 ms or more"):
        AccessPublisher(slow, "waft.access.p", batch_ms=-1)


def test_access_batches_are_read_record_by_record():
    good = {"method": "GET", "path": "/m/matches", "status": 200, "bytes": 3, "ms": 1.5}
    records, bad = AccessRecord.decode_many(json.dumps([good, {"path": "/x", "status": 99}, "junk", good]).encode())
    assert records == [AccessRecord("GET", "/m/matches", 200, 3, 1.5)] * 2 and bad == 2
    assert AccessRecord.decode_many(json.dumps(good).encode()) == ([AccessRecord("GET", "/m/matches", 200, 3, 1.5)], 0)
    with pytest.raises(BadAccessRecord, match="at most 10000"):
        AccessRecord.decode_many(json.dumps([good] * 10_001).encode())
    with pytest.raises(BadAccessRecord):
        AccessRecord.decode_many(b"[not json")


# ------------------------------------------------------------------ token and binding
def test_binding_decides_whether_a_token_is_needed(monkeypatch):
    monkeypatch.delenv("WAFT_DASHBOARD_TOKEN", raising=False)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.com")
    assert not DashboardConfig(host="127.0.0.1").token_required
    public = DashboardConfig(host="0.0.0.0")
    assert public.token_required and public.generated_token and len(public.token or "") >= 24
    assert DashboardConfig(host="0.0.0.0").token != public.token
    monkeypatch.setenv("WAFT_DASHBOARD_TOKEN", "from-env")
    chosen = DashboardConfig(host="10.1.2.3")
    assert chosen.token == "from-env" and not chosen.generated_token


async def test_public_dashboard_checks_the_token_on_page_api_websocket_and_metrics(nats_url, lattice_prefix):
    async with serving_dashboard(nats_url, lattice_prefix, public=True, token="s3cret") as url:
        base = url.split("?", 1)[0]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # cookies for an IP
            for path in ("", "static/app.js", "api/state", "metrics", "api/claims/x"):
                async with http.get(base + path) as response:
                    assert response.status == 401, path
            async with http.post(base + "api/links/delete", json={"actor_id": "a", "contract_id": "c"}) as response:
                assert response.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(base + "api/ws")
            assert refused.value.status == 401
            for token in ("wrong", "s3cre", "S3CRET", "s3cret2"):
                async with http.get(base + "api/state", headers={"Authorization": f"Bearer {token}"}) as response:
                    assert response.status == 401
            async with http.get(base + "api/livez") as response:  # probes stay open
                assert response.status == 200
            bearer = {"Authorization": "Bearer s3cret"}
            async with http.get(base + "api/state", headers=bearer) as response:
                assert response.status == 200 and (await response.json())["state"]["prefix"] == lattice_prefix
            async with http.get(base + "metrics", headers=bearer) as response:
                assert response.status == 200
            async with http.ws_connect(base + "api/ws", headers=bearer) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
            # the announced URL sets a cookie and drops the token from the address bar
            async with http.get(url, allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/"
                assert response.cookies[TOKEN_COOKIE].value == "s3cret"
                assert response.cookies[TOKEN_COOKIE]["httponly"]
            async with http.get(base + "api/state") as response:  # the session now carries the cookie
                assert response.status == 200
            async with http.ws_connect(base + "api/ws") as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
            # another site's page cannot drive it through the browser's cookie
            async with http.post(base + "api/links/delete", json={"actor_id": "a", "contract_id": "c"},
                                 headers={"Origin": "http://evil.example"}) as response:
                assert response.status == 403


async def test_loopback_dashboard_refuses_other_host_names(nats_url, lattice_prefix):
    """DNS rebinding: a name that resolves to 127.0.0.1 is still not the dashboard's name."""
    async with serving_dashboard(nats_url, lattice_prefix, token="loop") as url, aiohttp.ClientSession() as http:
        url = url.split("?", 1)[0]
        bearer = {"Authorization": "Bearer loop"}
        async with http.get(url + "api/state") as response:
            assert response.status == 200
        async with http.get(url + "api/state", headers={"Host": "evil.example:4000"}) as response:
            assert response.status == 403
        async with http.post(url + "api/actors", json={"ref": ""}, headers=bearer) as response:  # a 400, not a crash
            assert response.status in (400, 409)
        async with http.post(url + "api/actors/x/scale", json={"count": -1}, headers=bearer) as response:
            assert response.status == 400


async def test_loopback_dashboard_writes_need_the_token(nats_url, lattice_prefix, monkeypatch):
    """Issue 14: any local process reaches loopback, and one POST starts a provider (code execution). Reads
    stay open there; every write wants the token, which the printed URL moves into a SameSite=Strict cookie."""
    monkeypatch.delenv("WAFT_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("WAFT_INSECURE_NO_AUTH", raising=False)
    async with serving_dashboard(nats_url, lattice_prefix) as url:
        base, _, query = url.partition("?")
        assert query.startswith("token=") and len(query) > 30  # generated, and printed with the URL
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + "api/state") as response:
                assert response.status == 200
            for path, body in (("api/providers", {"ref": "python:waft_httpserver"}), ("api/actors", {"ref": "x"}),
                               ("api/links/delete", {"actor_id": "a", "contract_id": "c"})):
                async with http.post(base + path, json=body) as response:  # no Origin header: as curl sends it
                    assert response.status == 401, path
            for method in ("PUT", "DELETE", "PATCH"):
                async with http.request(method, base + "api/links") as response:
                    assert response.status == 401, method
            async with http.get(base + "?token=wrong", allow_redirects=False) as response:
                assert response.status == 401
            async with http.get(url, allow_redirects=False) as response:
                assert response.status == 303 and response.headers["Location"] == "/"
                cookie = response.cookies[TOKEN_COOKIE]
                assert cookie["samesite"] == "Strict" and cookie["httponly"]
            async with http.post(base + "api/links/delete", json={"actor_id": "a", "contract_id": "c"}) as response:
                assert response.status not in (401, 403)  # the cookie carries the token
            async with http.post(base + "api/links/delete", json={"actor_id": "a", "contract_id": "c"},
                                 headers={"Origin": "http://evil.example"}) as response:
                assert response.status == 403
    async with serving_dashboard(nats_url, lattice_prefix, open_writes=True) as url, aiohttp.ClientSession() as http:
        assert "token" not in url  # --insecure-no-auth: today's open loopback writes
        async with http.post(url + "api/links/delete", json={"actor_id": "a", "contract_id": "c"}) as response:
            assert response.status not in (401, 403)


# ------------------------------------------------------------------ the CLI
async def test_waft_dashboard_command_serves_until_signalled(nats_url, lattice_prefix, tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waft", "dashboard", "--nats-url", nats_url, "-x", lattice_prefix,
        "--address", "127.0.0.1:0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "BINDLE_URL": "http://127.0.0.1:9/v1/"})
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split(" ", 1)[1].strip()
        assert "?token=" in url  # writes need it, even on loopback
        async with aiohttp.ClientSession() as http, http.get(url.split("?", 1)[0] + "api/readyz") as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
