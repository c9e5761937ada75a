"""Issue 14, "the control plane is open by default": what `waft up` starts refuses whoever has no credentials.

Real processes throughout: `waft up` in a subprocess (nats-server, bindle, host, dashboard, an echo app
with the httpserver provider), the CLI as a user runs it, and an attacker's NATS and HTTP clients.
Before the fix every refusal below was an acceptance: an anonymous NATS client could publish control
commands, `curl -X POST` on the dashboard started providers, and bindle took anonymous pushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
from waft_testing import echo_app_manifest, run_waft, running_host, waft_up_process

from waft.claims import KeyPair, Role
from waft.embedded_nats import EmbeddedNats
from waft.host.providers import ProviderStartError
from waft.lattice import credentials
from waft.lattice.chunking import ChunkStore
from waft.lattice.connection import server_caught_up

pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Up:
    home: Path
    urls: dict[str, str]
    http_port: int
    log: Path

    def waft(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_waft(*args, home=self.home, timeout=120)


@contextlib.contextmanager
def waft_up(tmp_path: Path, *extra: str) -> Iterator[Up]:
    """`waft up` on free ports with the echo app, its own $WAFT_HOME; SIGTERM (and a check it exited 0) after."""
    port = free_port()
    manifest = echo_app_manifest(tmp_path / "app.yaml", "echo-auth", port)
    home = tmp_path / "up-home"
    home.mkdir()
    log = tmp_path / "up.log"
    with waft_up_process(home, log, "--nats-port", "0", "--bindle-address", "127.0.0.1:0", "--dashboard-address",
                         "127.0.0.1:0", "--app", str(manifest), *extra) as (urls, _):
        yield Up(home, urls, port, log)


async def connect_error(url: str, **options: object) -> str:
    """Connect once, no retries; the server's refusal as text, or "" when it let the client in."""
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3,
                                error_cb=_ignore, **options)  # type: ignore[arg-type]
    except (nats.errors.Error, OSError) as exc:
        return str(exc).lower()
    await nc.close()
    return ""


async def _ignore(exc: Exception) -> None:
    pass


def http(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed; (status, headers, body) whatever the status."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def stored_seed(home: Path, name: str) -> str:
    return (home / "keys" / f"{name}.nk").read_text().strip()


INVOICE = b'bindleVersion = "1.0.0"\n\n[bindle]\nname = "hostile/anonymous"\nversion = "0.1.0"\n'


def test_default_up_refuses_anonymous_nats_dashboard_writes_and_bindle_pushes(tmp_path: Path) -> None:
    with waft_up(tmp_path) as up:
        nats_url, dashboard, bindle = up.urls["nats"], up.urls["dashboard"], up.urls["bindle"]
        assert "@" not in nats_url  # no password in the URL it prints
        # the credentials: 0600 files in $WAFT_HOME
        for path in (up.home / "keys" / "nats_host.nk", up.home / "keys" / "nats_provider.nk",
                     up.home / "bindle.credentials", up.home / "bindle.htpasswd"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

        # NATS: no credentials, or a key the server does not know, is refused at connect
        assert "authorization violation" in asyncio.run(connect_error(nats_url))
        stranger = KeyPair.generate(Role.USER).seed
        assert "authorization violation" in asyncio.run(connect_error(nats_url, nkeys_seed_str=stranger))

        # the provider's credential: connects, but cannot send a control command or write the lattice cache
        host_id = up.urls["host"]
        violations = asyncio.run(provider_attempts(nats_url, stored_seed(up.home, "nats_provider"), host_id))
        assert any(f"wasmbus.ctl.default.cmd.{host_id.lower()}.stop" in v for v in violations), violations
        assert any("lc.default.linkdefs" in v for v in violations), violations
        assert any("$js.api.stream.purge.latticecache_default" in v for v in violations), violations

        # the app works: the host and its provider connected with their own credentials
        status, _, body = http("GET", f"http://127.0.0.1:{up.http_port}/hello")
        assert status == 200 and b'"path":"/hello"' in body

        # the CLI needs no credentials flag (only where the server is), and the host survived the attempts
        hosts = up.waft("ctl", "get", "hosts", "--nats-url", nats_url, "-o", "json")
        assert hosts.returncode == 0, hosts.stderr
        assert [h["id"] for h in json.loads(hosts.stdout)] == [host_id]
        listed = up.waft("app", "list", "--nats-url", nats_url, "-o", "json")
        assert listed.returncode == 0, listed.stderr

        # a second host joins with the stored credentials, no flag
        joined = subprocess.Popen([sys.executable, "-m", "waft", "host", "--nats-url", nats_url],
                                  env={**os.environ, "WAFT_HOME": str(up.home)}, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            assert joined.stdout is not None
            lines = [joined.stdout.readline() for _ in range(1)]
            while "joined lattice" not in lines[-1] and lines[-1] and len(lines) < 200:
                lines.append(joined.stdout.readline())
            assert "joined lattice" in lines[-1], "".join(lines)
        finally:
            joined.send_signal(signal.SIGTERM)
            joined.wait(30)

        # dashboard: reads stay open on loopback, a write without the token is refused (no Origin header)
        base = dashboard.split("?", 1)[0]
        assert "?token=" in dashboard
        assert http("GET", base + "api/state")[0] == 200
        provider = json.dumps({"ref": "python:waft_httpserver", "link_name": "attacker"}).encode()
        assert http("POST", base + "api/providers", body=provider,
                    headers={"Content-Type": "application/json"})[0] == 401
        status, headers, _ = http("GET", dashboard)  # the printed URL moves the token into a cookie
        assert status == 303 and "SameSite=Strict" in headers["Set-Cookie"]
        assert "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        status, _, body = http("POST", base + "api/links/delete", headers={"Cookie": cookie,
                                                                           "Content-Type": "application/json"},
                               body=json.dumps({"actor_id": "Mx", "contract_id": "c"}).encode())
        assert status != 401 and status != 403, body

        # bindle: an anonymous push or yank is refused; reads stay anonymous; the CLI pushes with no flag
        toml = {"Content-Type": "application/toml"}
        assert http("POST", bindle.rstrip("/") + "/_i", body=INVOICE, headers=toml)[0] == 403
        assert http("DELETE", bindle.rstrip("/") + "/_i/hostile/anonymous/0.1.0")[0] == 403
        invoice = tmp_path / "invoice.toml"
        invoice.write_bytes(INVOICE)
        pushed = up.waft("bindle", "-s", bindle, "push-invoice", str(invoice))
        assert pushed.returncode == 0, pushed.stderr
        assert http("GET", bindle.rstrip("/") + "/_i/hostile/anonymous/0.1.0")[0] == 200


async def provider_attempts(url: str, seed: str, host_id: str) -> list[str]:
    """What a hostile provider would publish; the permission violations the server answered with."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(url, nkeys_seed_str=seed, error_cb=on_error, allow_reconnect=False)
    try:
        await nc.publish(f"wasmbus.ctl.default.cmd.{host_id}.stop", json.dumps({"host_id": host_id}).encode())
        await nc.publish("lc.default.linkdefs.forged", b"{}")
        await nc.publish("$JS.API.STREAM.PURGE.LATTICECACHE_default", b"{}", reply=nc.new_inbox())
        await server_caught_up(nc)
        for _ in range(50):
            if len(errors) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    return errors


def test_insecure_no_auth_restores_open_access(tmp_path: Path) -> None:
    with waft_up(tmp_path, "--insecure-no-auth") as up:
        assert asyncio.run(connect_error(up.urls["nats"])) == ""
        base = up.urls["dashboard"]
        assert "token" not in base
        status, _, body = http("POST", base + "api/links/delete", headers={"Content-Type": "application/json"},
                               body=json.dumps({"actor_id": "Mx", "contract_id": "c"}).encode())
        assert status not in (401, 403), body
        toml = {"Content-Type": "application/toml"}
        assert http("POST", up.urls["bindle"].rstrip("/") + "/_i", body=INVOICE, headers=toml)[0] in (200, 201, 202)


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `condition` until it holds or `timeout` passes (the assertion after it then says what is missing)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


async def test_provider_credential_cannot_send_control_commands_but_carries_chunks() -> None:
    """The permissions alone, on a real nats-server: the provider user answers, invokes actors and uses the
    object store; it cannot publish `wasmbus.ctl.>`, events, link puts or the lattice cache, nor take an
    actor's subject; the host user can do all of it."""
    creds = credentials.ensure_credentials()
    async with EmbeddedNats(authorization=credentials.authorization_config(creds, ["default"])) as server:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        host = await nats.connect(server.url, nkeys_seed_str=creds.host.seed)
        provider = await nats.connect(server.url, nkeys_seed_str=creds.provider.seed, error_cb=on_error)
        try:
            seen: list[str] = []

            async def record(msg: object) -> None:
                seen.append(msg.subject)  # type: ignore[attr-defined]

            await host.subscribe("wasmbus.>", cb=record)
            await host.subscribe("lc.>", cb=record)
            await server_caught_up(host)
            refused = ["wasmbus.ctl.default.cmd.NHOST.lp", "wasmbus.evt.default",
                       "wasmbus.rpc.default.VOTHER.default.linkdefs.put", "lc.default.claims.M1",
                       "$KV.apps_default.echo", "$JS.API.STREAM.DELETE.LATTICECACHE_default",
                       "$JS.API.STREAM.DELETE.KV_apps_default"]
            for subject in refused:
                await provider.publish(subject, b"{}")
            await provider.publish("wasmbus.rpc.default.MACTOR", b"invocation")
            await server_caught_up(provider)
            # One connection's messages arrive in order: once the allowed one is here, any refused one that
            # had got through would be here before it. Waiting on the events, not a sleep, keeps a loaded
            # machine from failing the test.
            await until(lambda: "wasmbus.rpc.default.MACTOR" in seen)
            await until(lambda: all(any(f'publish to "{s.lower()}"' in e for e in errors) for s in refused))
            assert seen == ["wasmbus.rpc.default.MACTOR"]
            for subject in refused:
                assert any(f'publish to "{subject.lower()}"' in e for e in errors), (subject, errors)

            await provider.subscribe("wasmbus.rpc.default.MACTOR", queue="steal")
            await server_caught_up(provider)
            await until(lambda: any('subscription to "wasmbus.rpc.default.mactor"' in e for e in errors))
            assert any('subscription to "wasmbus.rpc.default.mactor"' in e for e in errors), errors

            # what providers do need: answer the host, and carry a chunked payload both ways
            async def pong(msg: object) -> None:
                await msg.respond(b"pong")  # type: ignore[attr-defined]

            await provider.subscribe("wasmbus.rpc.default.VPROV.default", queue="rpc", cb=pong)
            await server_caught_up(provider)
            assert (await host.request("wasmbus.rpc.default.VPROV.default", b"ping", timeout=5)).data == b"pong"
            payload = os.urandom(3_000_000)
            await ChunkStore(provider, "default").put("inv-1", payload)
            assert await ChunkStore(host, "default").take("inv-1", len(payload)) == payload
            await ChunkStore(host, "default").put("inv-2-r", payload)
            assert await ChunkStore(provider, "default").take("inv-2-r", len(payload)) == payload
        finally:
            await provider.close()
            await host.close()


async def test_python_provider_refs_are_limited_to_the_allow_list(nats_url: str, lattice_prefix: str) -> None:
    """`python:<module>` runs only a module the operator allowed; the shipped list excludes the test double."""
    from waft.host.host import StartError

    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            python_providers=["waft_httpserver", "waft_mlinference"]) as host:
        for module in ("waft_testprovider", "http.server", "os"):
            with pytest.raises(StartError, match="not an allowed provider"):
                await host.start_provider(f"python:{module}")  # type: ignore[attr-defined]
    from waft.host.provider_refs import DEFAULT_PYTHON_PROVIDERS, resolve_provider

    assert DEFAULT_PYTHON_PROVIDERS == ("waft_httpserver", "waft_mlinference")
    with pytest.raises(ProviderStartError, match="not an allowed provider"):
        await resolve_provider("python:waft_testprovider", python_providers=list(DEFAULT_PYTHON_PROVIDERS))
    spec = await resolve_provider("python:waft_testprovider", python_providers=["waft_testprovider"])
    assert spec.contract_id
