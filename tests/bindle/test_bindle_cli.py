"""`waft bindle ...` end to end: the CLI in-process (`waft.cli.main.main`) against a server in a
thread, plus `waft bindle serve` as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from bindle_support import IDENTITY, PLUS3, RED, WARPCORE_V1, ThreadedServer

from waft.bindle.server import ServerConfig
from waft.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_server(tmp_path, monkeypatch):
    with ThreadedServer(ServerConfig(directory=tmp_path / "store")) as harness:
        monkeypatch.setenv("BINDLE_URL", harness.url)
        yield harness


def _write_model_files(tmp_path: Path, bundle) -> tuple[Path, list[Path]]:
    invoice = tmp_path / "invoice.toml"
    invoice.write_text(bundle.toml())
    files = []
    for spec in bundle.files:
        path = tmp_path / spec.name
        path.write_bytes(spec.data)
        files.append(path)
    return invoice, files


def test_publish_like_push_bindle_sh(cli_server, tmp_path, capsys):
    """The original publishing flow: push-invoice, then push-file per parcel, then info."""
    invoice, files = _write_model_files(tmp_path, IDENTITY)
    code, out, _ = run(capsys, "bindle", "push-invoice", str(invoice))
    assert code == 0 and "2 parcel(s) still to upload" in out
    for path in files:
        code, out, _ = run(capsys, "bindle", "push-file", IDENTITY.id, str(path), "-o", "json")
        assert code == 0
        assert json.loads(out)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert json.loads(out)["status"] == "uploaded"
    code, out, _ = run(capsys, "bindle", "push-file", IDENTITY.id, str(files[0]), "-o", "json")
    assert code == 0 and json.loads(out)["status"] == "already stored"
    code, out, _ = run(capsys, "bindle", "info", IDENTITY.id, "-o", "json")
    info = json.loads(out)
    sent = tomllib.loads(IDENTITY.toml())
    assert info["bindle"] == sent["bindle"] and info["parcel"] == sent["parcel"]
    code, out, _ = run(capsys, "bindle", "info", IDENTITY.id)
    assert tomllib.loads(out)["parcel"] == sent["parcel"]
    code, _, err = run(capsys, "bindle", "push-invoice", str(invoice))
    assert code == 1 and "already exists" in err


def test_push_file_not_in_invoice_fails_with_server_message(cli_server, tmp_path, capsys):
    invoice, _ = _write_model_files(tmp_path, WARPCORE_V1)
    assert run(capsys, "bindle", "push-invoice", str(invoice))[0] == 0
    stray = tmp_path / "stray.bin"
    stray.write_bytes(b"not listed")
    code, _, err = run(capsys, "bindle", "push-file", WARPCORE_V1.id, str(stray))
    assert code == 1 and "does not exist in invoice" in err
    assert not list(cli_server.root.rglob("*.part"))


def test_get_uses_cache_and_exports(cli_server, tmp_path, capsys):
    invoice, files = _write_model_files(tmp_path, PLUS3)
    run(capsys, "bindle", "push-invoice", str(invoice))
    for path in files:
        run(capsys, "bindle", "push-file", PLUS3.id, str(path))
    cache = tmp_path / "cache"
    code, out, _ = run(capsys, "bindle", "get", PLUS3.id, "--cache-dir", str(cache), "-o", "json")
    assert code == 0
    paths = json.loads(out)["parcels"]
    for sha, path in paths.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha
    export = tmp_path / "export"
    code, out, _ = run(capsys, "bindle", "get", PLUS3.id, "--cache-dir", str(cache), "-e", str(export))
    assert code == 0
    for sha in PLUS3.parcels:
        assert cli_server.count("GET", f"@{sha}") == 1  # the second get came from the cache
    base = export / hashlib.sha256(PLUS3.id.encode()).hexdigest()
    assert tomllib.loads((base / "invoice.toml").read_text())["bindle"]["name"] == "plus3"
    assert {p.name for p in (base / "parcels").iterdir()} == {f"{sha}.dat" for sha in PLUS3.parcels}


def test_push_standalone_directory(cli_server, tmp_path, capsys):
    """`bindle push -p DIR ID` reads DIR/<sha256(id)>/invoice.toml and parcels/<sha>.dat (v0.7.1 layout),
    built here by hand; a second push reuses the invoice and uploads nothing."""
    base = tmp_path / "standalone" / hashlib.sha256(IDENTITY.id.encode()).hexdigest()
    (base / "parcels").mkdir(parents=True)
    (base / "invoice.toml").write_text(IDENTITY.toml())
    for sha, data in IDENTITY.parcels.items():
        (base / "parcels" / f"{sha}.dat").write_bytes(data)
    code, out, _ = run(capsys, "bindle", "-s", cli_server.url, "push", IDENTITY.id, "-p", str(tmp_path / "standalone"),
                       "-o", "json")
    assert code == 0
    result = json.loads(out)
    assert result["created"] is True and sorted(result["uploaded"]) == sorted(IDENTITY.parcels)
    for sha, data in IDENTITY.parcels.items():
        assert (cli_server.root / "parcels" / sha / "parcel.dat").read_bytes() == data
    code, out, _ = run(capsys, "bindle", "push", IDENTITY.id, "-p", str(tmp_path / "standalone"), "-o", "json")
    assert code == 0 and json.loads(out) == {"id": IDENTITY.id, "created": False, "uploaded": [], "missing": []}
    code, _, err = run(capsys, "bindle", "push", "other/1.0.0", "-p", str(tmp_path / "standalone"))
    assert code == 1 and "no standalone bindle" in err


def test_get_invoice_and_get_parcel_create_new_files(cli_server, tmp_path, capsys):
    invoice, files = _write_model_files(tmp_path, WARPCORE_V1)
    run(capsys, "bindle", "push-invoice", str(invoice))
    run(capsys, "bindle", "push-file", WARPCORE_V1.id, str(files[0]))
    out_invoice = tmp_path / "got.toml"
    assert run(capsys, "bindle", "get-invoice", WARPCORE_V1.id, "-O", str(out_invoice))[0] == 0
    assert tomllib.loads(out_invoice.read_text())["bindle"]["version"] == "1.0.0"
    code, _, err = run(capsys, "bindle", "get-invoice", WARPCORE_V1.id, "-O", str(out_invoice))
    assert code == 1 and "already exists" in err
    out_parcel = tmp_path / "got.dat"
    assert run(capsys, "bindle", "get-parcel", WARPCORE_V1.id, RED.sha, "-O", str(out_parcel))[0] == 0
    assert out_parcel.read_bytes() == b"a red one"


def test_search_and_yank(cli_server, tmp_path, capsys):
    code, out, _ = run(capsys, "bindle", "search")
    assert code == 0 and "No matching bindles were found" in out
    invoice, _ = _write_model_files(tmp_path, WARPCORE_V1)
    run(capsys, "bindle", "push-invoice", str(invoice))
    code, out, _ = run(capsys, "bindle", "search", "-q", "warp")
    assert code == 0 and "enterprise.com/warpcore/1.0.0" in out and "Showing results 1 to 1 of 1" in out
    code, out, _ = run(capsys, "bindle", "search", "-q", "warp", "-b", "^2", "-o", "json")
    assert json.loads(out)["total"] == 0
    assert run(capsys, "bindle", "yank", WARPCORE_V1.id)[0] == 0
    code, _, err = run(capsys, "bindle", "info", WARPCORE_V1.id)
    assert code == 1 and "bindle is yanked" in err
    code, out, _ = run(capsys, "bindle", "info", WARPCORE_V1.id, "-y", "-o", "json")
    assert code == 0 and json.loads(out)["yanked"] is True


def test_bad_id_and_unreachable_server(capsys, monkeypatch):
    code, _, err = run(capsys, "bindle", "info", "no-version")
    assert code == 1 and "NAME/VERSION" in err
    monkeypatch.setenv("BINDLE_URL", "http://127.0.0.1:9/v1/")
    code, _, err = run(capsys, "bindle", "info", "x/1.0.0")
    assert code == 1 and "cannot reach the bindle server" in err


def test_serve_subcommand_runs_a_server(tmp_path):
    env = {**os.environ, "WAFT_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "waft", "bindle", "serve", "--address", "127.0.0.1:0",
                             "--directory", str(tmp_path / "store")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        line = proc.stdout.readline().decode()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/v1/", line)
        assert match, line
        with urllib.request.urlopen(match.group(1) + "/healthz", timeout=30) as resp:
            assert resp.read() == b"OK"
        assert (tmp_path / "store" / "signing-keys.toml").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
