"""`waft models`: add refuses wrong files, fetch fails clearly without a source, push fills a bindle server.

Refusals are the library's (`waft.models.store`), so they arrive as WaftError, which the CLI prints in one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from waft import models
from waft.bindle.server import ServerConfig, create_app
from waft.cli.main import build_parser
from waft.errors import WaftError


async def _run(argv: list[str]) -> int:
    args: argparse.Namespace = build_parser().parse_args(argv)
    result = args.handler(args)
    return await result if inspect.iscoroutine(result) else result


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WAFT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def small_zoo_entry(monkeypatch: pytest.MonkeyPatch, built_models: Path) -> tuple[models.ModelEntry, bytes]:
    """squeezenetv117 re-pinned to a small real ONNX file, so add/fetch can succeed offline."""
    data = (built_models / "identity" / "identity_input_output.onnx").read_bytes()
    entry = dataclasses.replace(models.get("squeezenetv117"), size=len(data),
                                sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(models.REGISTRY, "squeezenetv117", entry)
    return entry, data


@pytest.fixture
async def file_server(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(body=files[name]) if name in files else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", files
    await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_list_shows_every_model(built_models: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await _run(["models", "list", "-o", "json"]) == 0
    rows = {r["route"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == list(models.REGISTRY)
    assert rows["effnetlite0"]["status"] == "built" and rows["effnetlite0"]["bindle_id"] == "efficientnet-lite0/0.1.0"
    assert rows["mobilenetv27"]["status"] == "missing" and rows["mobilenetv27"]["bindle_id"] == "mobilenetv2-7/0.1.0"
    assert rows["squeezenetv117"]["bindle_id"] == "squeezenetv1-1-7/0.1.0"


async def test_add_refuses_wrong_size(home: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "mobilenetv2-7.onnx"
    bogus.write_bytes(b"<html>404</html>")
    with pytest.raises(WaftError) as err:
        await _run(["models", "add", "mobilenetv27", str(bogus)])
    message = str(err.value)
    assert "\n" not in message and "16 bytes" in message and "13963115" in message
    assert "0e7c0aa4bc74650386fa1d2c84705753de7c2bdb21909ada5c59154bb429e092" in message
    assert not (home / "models" / "mobilenetv27").exists()


async def test_add_refuses_wrong_sha256_of_right_size(home: Path, tmp_path: Path,
                                                      small_zoo_entry: tuple[models.ModelEntry, bytes]) -> None:
    entry, data = small_zoo_entry
    bogus = tmp_path / "squeezenet.onnx"
    bogus.write_bytes(bytes(len(data)))
    with pytest.raises(WaftError, match=f"sha256 {hashlib.sha256(bytes(len(data))).hexdigest()}.*{entry.sha256}"):
        await _run(["models", "add", "squeezenetv117", str(bogus)])


async def test_add_of_a_file_that_is_no_model_says_so_and_leaves_nothing(home: Path, tmp_path: Path) -> None:
    """Any name may be added (a user's own model), but the file must be one."""
    (tmp_path / "x.onnx").write_bytes(b"x")
    with pytest.raises(WaftError, match=r"x.onnx is not a readable onnx model"):
        await _run(["models", "add", "resnet", str(tmp_path / "x.onnx")])
    assert not (home / "models" / "resnet").exists()


async def test_add_imports_a_verified_file(home: Path, tmp_path: Path,
                                           small_zoo_entry: tuple[models.ModelEntry, bytes]) -> None:
    _entry, data = small_zoo_entry
    src = tmp_path / "download.onnx"
    src.write_bytes(data)
    assert await _run(["models", "add", "squeezenetv117", str(src)]) == 0
    directory = home / "models" / "squeezenetv117"
    assert (directory / "squeezenetv1-1-7.onnx").read_bytes() == data
    meta = json.loads((directory / "metadata.json").read_text())
    assert (meta["input_name"], meta["output_name"]) == ("0", "1")  # read from the file, not guessed
    assert meta["input_spec"]["mean"] == [123.675, 116.28, 103.53] and meta["labels"] == "imagenet1k-synsets"
    assert len((directory / "labels.txt").read_text().splitlines()) == 1000
    assert models.find_local("squeezenetv117") == directory


async def test_fetch_downloads_and_verifies(home: Path, small_zoo_entry: tuple[models.ModelEntry, bytes],
                                            file_server: tuple[str, dict[str, bytes]]) -> None:
    _entry, data = small_zoo_entry
    url, files = file_server
    files["good.onnx"] = data
    files["bad.onnx"] = data[:-1] + b"\0"
    with pytest.raises(WaftError, match=r"refusing .*sha256"):
        await _run(["models", "fetch", "squeezenetv117", "--url", f"{url}/bad.onnx"])
    assert not (home / "models" / "squeezenetv117" / "invoice.toml").exists()
    assert await _run(["models", "fetch", "squeezenetv117", "--url", f"{url}/good.onnx"]) == 0
    assert (home / "models" / "squeezenetv117" / "squeezenetv1-1-7.onnx").read_bytes() == data
    assert not list((home / "models" / "squeezenetv117").glob(".*"))  # no partial download left behind


async def test_fetch_without_a_reachable_source_fails_clearly(home: Path,
                                                              file_server: tuple[str, dict[str, bytes]]) -> None:
    url, _files = file_server
    with pytest.raises(WaftError, match=r"cannot download mobilenetv2-7\.onnx .*404.*waft models add mobilenetv27"):
        await _run(["models", "fetch", "mobilenetv27", "--url", f"{url}/missing.onnx"])
    with pytest.raises(WaftError, match=r"cannot download .*waft models add mobilenetv27 FILE"):
        await _run(["models", "fetch", "mobilenetv27", "--url", f"http://127.0.0.1:{_closed_port()}/x.onnx",
                    "--timeout", "10"])


async def test_push_fills_a_bindle_server(built_models: Path, home: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    runner = web.AppRunner(create_app(ServerConfig(directory=tmp_path / "bindle")))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        assert await _run(["models", "push", "--bindle-url", base, "identity", "effnetlite0", "-o", "json"]) == 0
        first: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
        assert [(r["route"], r["invoice"], r["uploaded"]) for r in first] == [
            ("identity", "created", 2), ("effnetlite0", "created", 3)]
        assert await _run(["models", "push", "--bindle-url", f"{base}/v1", "identity", "-o", "json"]) == 0
        again = json.loads(capsys.readouterr().out)
        assert [(r["invoice"], r["uploaded"], r["present"]) for r in again] == [("exists", 0, 2)]
        entry = models.get("identity")
        sha = entry.sha256
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/v1/_i/{entry.bindle_id}@{sha}") as resp:
                assert resp.status == 200
                assert await resp.read() == (built_models / "identity" / entry.model_file).read_bytes()
            async with session.get(f"{base}/v1/_r/missing/efficientnet-lite0/0.1.0",
                                   headers={"Accept": "application/json"}) as resp:
                assert resp.status == 200 and not (await resp.json()).get("missing")
    finally:
        await runner.cleanup()


async def test_push_unknown_local_route_fails(built_models: Path, home: Path) -> None:
    with pytest.raises(WaftError, match="no built or imported copy of mobilenetv27"):
        await _run(["models", "push", "--bindle-url", f"http://127.0.0.1:{_closed_port()}", "mobilenetv27"])


async def test_push_to_unreachable_server_fails_clearly(built_models: Path, home: Path) -> None:
    with pytest.raises(WaftError, match=r"bindle server http://127\.0\.0\.1:\d+/v1: pushing identity: cannot reach"):
        await _run(["models", "push", "--bindle-url", f"http://127.0.0.1:{_closed_port()}", "identity"])
