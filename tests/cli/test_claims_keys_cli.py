"""`waft keys` and `waft claims` as a user runs them: real processes, real files, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from waft_testing import built_actor

from waft.claims import verify_actor, wasm


def waft(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAFT_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "waft", *args], capture_output=True, text=True, env=env, timeout=60)


def test_keys_gen_get_list(tmp_path):
    made = waft("keys", "gen", "module", "--name", "mine", "-o", "json", home=tmp_path)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["public_key"].startswith("M") and key["seed"].startswith("SM")
    got = json.loads(waft("keys", "get", "mine", "-o", "json", home=tmp_path).stdout)
    assert got["public_key"] == key["public_key"] and got["role"] == "module"
    listed = json.loads(waft("keys", "list", "-o", "json", home=tmp_path).stdout)
    assert [k["name"] for k in listed] == ["mine"]
    missing = waft("keys", "get", "nope", home=tmp_path)
    assert missing.returncode == 1 and "no key named 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    bad_role = waft("keys", "gen", "wizard", home=tmp_path)
    assert bad_role.returncode == 1 and "unknown key role 'wizard'" in bad_role.stderr


def test_claims_sign_and_inspect(tmp_path):
    module = tmp_path / "echo.wasm"
    module.write_bytes(built_actor("echo", signed=False).read_bytes())
    signed = waft("claims", "sign", str(module), "-n", "Echo", "-q", "-l", "-c", "waft:test", "-v", "1.2.3", "-r", "7",
                  "-a", "demo/echo", home=tmp_path)
    assert signed.returncode == 0, signed.stderr
    out = tmp_path / "echo_s.wasm"
    claims = verify_actor(out.read_bytes())
    assert claims.name == "Echo" and claims.rev == 7 and claims.ver == "1.2.3" and claims.call_alias == "demo/echo"
    assert set(claims.caps) == {"waft:test", "wasmcloud:httpserver", "wasmcloud:builtin:logging"}
    shown = json.loads(waft("claims", "inspect", str(out), "-o", "json", home=tmp_path).stdout)
    assert shown["module"] == claims.subject and shown["hash"] == wasm.module_hash(out.read_bytes())
    token = waft("claims", "inspect", str(out), "--jwt-only", home=tmp_path).stdout.strip()
    assert token == wasm.read_token(out.read_bytes())
    # the same account signs everything by default; a module key per module
    again = waft("claims", "sign", str(module), "-d", str(tmp_path / "second.wasm"), home=tmp_path)
    assert again.returncode == 0
    assert verify_actor((tmp_path / "second.wasm").read_bytes()).issuer == claims.issuer


def test_claims_errors_are_one_line(tmp_path):
    (tmp_path / "junk.wasm").write_bytes(b"not wasm at all")
    for args in (("claims", "inspect", str(tmp_path / "junk.wasm")), ("claims", "sign", str(tmp_path / "junk.wasm")),
                 ("claims", "inspect", str(tmp_path / "missing.wasm")),
                 ("claims", "inspect", str(built_actor("echo", signed=False)))):
        result = waft(*args, home=tmp_path)
        assert result.returncode == 1, args
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    unsigned = waft("claims", "inspect", str(built_actor("echo", signed=False)), home=tmp_path)
    assert "No claims found" in unsigned.stderr


def test_ctl_without_a_lattice_fails_fast_with_one_line(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for args in (("ctl", "get", "hosts"), ("app", "list")):
        result = waft(*args, "--nats-url", f"nats://127.0.0.1:{port}", home=tmp_path)
        assert result.returncode == 1, result
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert lines == [f"error: cannot reach NATS at nats://127.0.0.1:{port} (NoServersError); "
                         "is the lattice up? (`waft up`)"], result.stderr
