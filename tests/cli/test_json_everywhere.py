"""Issue 16: `-o json` on every command, errors included, as wash answers in JSON mode.

Each command of the CLI (every leaf of the parser: a command added without a row here fails the first test)
runs as a user runs it, a subprocess, in JSON mode, with arguments that make it fail for real: a NATS, bindle
server or registry that is not there, a file that does not exist, a name nobody stored, a port that is taken.
What comes back must be wash's shape on stdout and nothing else: one JSON object `{"success": false, "error":
…}` (the error non-empty), exit status 1 (a refusal, not a usage error: the arguments are right), no
traceback. The few commands that cannot fail without setting up a broken machine (listing an empty key
store) are run to success instead, and must answer JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from waft.cli.main import build_parser

pytestmark = pytest.mark.timeout(300)
NATS = ("--nats-url", "nats://127.0.0.1:1", "-t", "2000")
HTTP = "http://127.0.0.1:1"
ACTOR, HOST, PROVIDER = "M" + "A" * 55, "N" + "A" * 55, "V" + "A" * 55
NOWHERE = "/nonexistent/waft"
#: Commands that succeed in a fresh $WAFT_HOME (their JSON answer is checked instead of an error).
SUCCEEDS = {("keys", "list"), ("keys", "trusted"), ("models", "list")}
#: Variables from a developer's shell that would point these commands somewhere real.
FOREIGN = ("WAFT_NATS_URL", "BINDLE_URL", "WAFT_BINDLE_URL", "WASMCLOUD_CTL_HOST", "WASMCLOUD_CTL_PORT",
           "WASMCLOUD_CLUSTER_SEED", "WASH_REG_USER", "WASH_REG_PASSWORD")


def leaf_commands() -> set[tuple[str, ...]]:
    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path
            return
        for name, child in subs[0].choices.items():
            yield from walk(child, (*path, name))

    return set(walk(build_parser(), ()))


def failing_invocations(taken: int) -> dict[tuple[str, ...], tuple[str, ...]]:
    """Each command -> arguments after it that make it fail (or, for SUCCEEDS, run)."""
    bindle = ("-s", HTTP)
    return {
        ("up",): ("--nats-port", str(taken), "--no-bindle", "--no-dashboard"),
        ("down",): (),
        ("host",): NATS[:2],  # WAFT_JOIN_TIMEOUT_MS (below) bounds its wait for NATS
        ("dashboard",): (*NATS[:2], "--address", "127.0.0.1:0"),
        ("ctl", "get", "hosts"): NATS,
        ("ctl", "get", "claims"): NATS,
        ("ctl", "get", "links"): NATS,
        ("ctl", "get", "inventory"): (HOST, *NATS),
        ("ctl", "start", "actor"): (f"{NOWHERE}.wasm", *NATS),
        ("ctl", "start", "provider"): ("python:waft_httpserver", *NATS),
        ("ctl", "stop", "actor"): (HOST, ACTOR, *NATS),
        ("ctl", "stop", "provider"): (HOST, PROVIDER, "default", "wasmcloud:httpserver", *NATS),
        ("ctl", "stop", "host"): (HOST, *NATS),
        ("ctl", "scale", "actor"): (HOST, ACTOR, "ref", "-c", "1", *NATS),
        ("ctl", "link", "put"): (ACTOR, PROVIDER, "wasmcloud:httpserver", "address=127.0.0.1:1", *NATS),
        ("ctl", "link", "del"): (ACTOR, "wasmcloud:httpserver", *NATS),
        ("ctl", "link", "query"): NATS,
        ("ctl", "call"): (ACTOR, "HttpServer.HandleRequest", "{}", *NATS),
        ("call",): (ACTOR, "HttpServer.HandleRequest", "{}", *NATS),
        ("app", "put"): (f"{NOWHERE}.yaml", *NATS),
        ("app", "deploy"): ("someapp", *NATS),
        ("app", "undeploy"): ("someapp", *NATS),
        ("app", "status"): ("someapp", *NATS),
        ("app", "list"): NATS,
        ("app", "get"): ("someapp", *NATS),
        ("app", "history"): ("someapp", *NATS),
        ("app", "del"): ("someapp", *NATS),
        ("app", "delete"): ("someapp", *NATS),
        ("keys", "gen"): ("nosuchrole",),
        ("keys", "get"): ("nosuch",),
        ("keys", "list"): (),
        ("keys", "trust"): ("not-a-key",),
        ("keys", "untrust"): ("not-a-key",),
        ("keys", "trusted"): (),
        ("claims", "sign"): (f"{NOWHERE}.wasm",),
        ("claims", "inspect"): (f"{NOWHERE}.wasm",),
        ("par", "create"): ("-c", "wasmcloud:x", "-v", "waft", "-n", "x", "--module", "waft_x", "--source", NOWHERE),
        ("par", "inspect"): (f"{NOWHERE}.par.gz",),
        ("reg", "push"): ("127.0.0.1:1/waft/x:0.1.0", f"{NOWHERE}.wasm"),
        ("reg", "pull"): ("127.0.0.1:1/waft/x:0.1.0", "--insecure"),
        ("reg", "ping"): ("127.0.0.1:1", "--insecure"),
        ("bindle", "push"): ("x/1.0.0", *bindle),
        ("bindle", "push-invoice"): (f"{NOWHERE}.toml", *bindle),
        ("bindle", "push-file"): ("x/1.0.0", f"{NOWHERE}.bin", *bindle),
        ("bindle", "get"): ("x/1.0.0", *bindle),
        ("bindle", "get-invoice"): ("x/1.0.0", *bindle),
        ("bindle", "get-parcel"): ("x/1.0.0", "0" * 64, *bindle),
        ("bindle", "search"): bindle,
        ("bindle", "yank"): ("x/1.0.0", *bindle),
        ("bindle", "info"): ("x/1.0.0", *bindle),
        ("bindle", "serve"): ("--address", f"127.0.0.1:{taken}"),
        ("models", "list"): (),
        ("models", "add"): ("mine", f"{NOWHERE}.onnx"),
        ("models", "fetch"): ("nosuchmodel",),
        ("models", "push"): ("nosuchmodel", "--bindle-url", HTTP),
        ("bench", "load"): (HTTP, "--rate", "0", "--duration", "1"),
    }


@contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_every_command_has_a_failing_invocation() -> None:
    with taken_port() as port:
        table = failing_invocations(port)
    assert sorted(" ".join(c) for c in leaf_commands() - set(table)) == []
    assert sorted(" ".join(c) for c in set(table) - leaf_commands()) == []


def run(command: tuple[str, ...], args: tuple[str, ...], home: Path, where: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env |= {"WAFT_HOME": str(home), "COLUMNS": "200", "WAFT_JOIN_TIMEOUT_MS": "3000"}
    argv = [*command, *args, "-o", "json"] if where == "after" else ["-o", "json", *command, *args]
    return subprocess.run([sys.executable, "-m", "waft", *argv], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)


def test_every_command_answers_json_errors_included(tmp_path: Path) -> None:
    with taken_port() as port:
        table = failing_invocations(port)
        jobs = sorted(table.items())
        with ThreadPoolExecutor(4) as pool:  # `-o json` before the command for every other one: both work
            done = list(pool.map(lambda job: run(job[1][0], job[1][1], tmp_path / f"home{job[0]}",
                                                 "before" if job[0] % 2 else "after"), enumerate(jobs)))
    wrong = []
    for (command, _), result in zip(jobs, done, strict=True):
        name = " ".join(command)
        try:
            answer = json.loads(result.stdout)
        except ValueError:
            wrong.append(f"{name}: stdout is not one JSON document: {result.stdout[-300:]!r} {result.stderr[-300:]!r}")
            continue
        if "Traceback" in result.stderr:
            wrong.append(f"{name}: traceback: {result.stderr[-500:]}")
        elif command in SUCCEEDS:
            if result.returncode != 0:
                wrong.append(f"{name}: rc {result.returncode}: {result.stdout}")
        elif result.returncode != 1 or not isinstance(answer, dict) or answer.get("success") is not False or \
                not isinstance(answer.get("error"), str) or not answer["error"] or set(answer) != {"success", "error"}:
            wrong.append(f"{name}: rc {result.returncode}, {answer!r}")
    assert wrong == [], "\n".join(wrong)
