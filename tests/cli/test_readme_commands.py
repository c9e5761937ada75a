"""Issues 7 and 16: every command in the README runs as a newcomer types it in a fresh clone. The CLI table's
commands against a real lattice (`waft up --detached`), a real docker-registry and the lattice's bindle server;
the "Try it" curl lines, word for word but for the port, against the ML app as `make run` serves it (models
pushed, deploy/ml-app.yaml deployed, `build/cat.jpg` made by the Makefile's own rule); and the docs name the
checkout's Python (`.venv/bin/python`), not whatever `python` is on PATH.

The README is parsed, not copied: a command it gains without a run here fails the last assertion of its test.
Everything in the CLI test shares one detached lattice, and `waft down` must leave nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_app_cli import ml_manifest, running_lattice, wait_http, wait_lattice_stopped, wait_ready
from test_up import processes_mentioning
from waft_testing import ROOT, docker_registry

pytestmark = pytest.mark.timeout(300)
HTTP = "wasmcloud:httpserver"


def readme_commands() -> set[tuple[str, ...]]:
    """Each command form of the README's "The CLI" table, as its words: ("ctl", "get", "hosts"), ("bindle",)…

    A backtick span that starts with `waft` names a group; one that does not continues the previous group
    (`start provider REF` after `waft ctl start actor …`) unless it starts with a group itself (`ctl scale …`).
    `a\\|b\\|c` in the last word gives one form per alternative; arguments and flags are dropped."""
    from waft.cli.main import GROUPS

    text = (ROOT / "README.md").read_text()
    section = text.split("## The CLI", 1)[1].split("\n## ", 1)[0]
    forms: set[tuple[str, ...]] = set()
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)]
        if len(cells) < 3 or not cells[1].startswith("`"):
            continue
        group = ""
        for span in re.findall(r"`([^`]+)`", cells[1]):
            words = []
            for token in span.replace("\\|", "|").split():
                if not re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", token):
                    break  # arguments (REF, FILE, [--count N], …) end the command words
                words.append(token)
            if words and words[0] == "waft":
                words = words[1:]
            elif words and words[0] not in GROUPS:
                words = [group, *words]
            if not words:
                continue
            group = words[0]
            for last in words[-1].split("|"):
                forms.add((*words[:-1], last))
    return forms


def test_readme_table_is_parsed() -> None:
    forms = readme_commands()
    for expected in (("up",), ("down",), ("host",), ("ctl", "get", "inventory"), ("ctl", "start", "provider"),
                     ("ctl", "scale", "actor"), ("ctl", "link", "query"), ("app", "list"), ("bindle",),
                     ("models", "fetch"), ("bench", "load"), ("reg", "pull")):
        assert expected in forms, sorted(forms)
    assert len(forms) >= 30, sorted(forms)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The CLI as the README names it (`.venv/bin/waft`): the console script next to the test's Python.
WAFT = str(Path(sys.executable).with_name("waft"))


class Waft:
    """`.venv/bin/waft …` with one $WAFT_HOME; records which command words ran."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = {**env, "WAFT_HOME": str(home), "COLUMNS": "200"}
        self.ran: list[tuple[str, ...]] = []

    def run(self, *args: str, rc: int = 0, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        self.ran.append(tuple(args))
        done = subprocess.run([WAFT, *args], capture_output=True, text=True, env=self.env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == rc, f"waft {' '.join(args)}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def error(self, *args: str) -> str:
        """A failing command's one-line error."""
        done = self.run(*args, rc=1)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        return lines[0]

    def covered(self, form: tuple[str, ...]) -> bool:
        return any(tuple(a for a in args if a != "--verbose")[:len(form)] == form for args in self.ran)


def poll(check, what: str, attempts: int = 600):  # type: ignore[no-untyped-def]
    """Call `check` until it returns something truthy (bounded polls, never a timing assertion)."""
    last = None
    for _ in range(attempts):
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: never happened (last: {last!r})")


def get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
    except OSError:
        return None


@contextlib.contextmanager
def detached_lattice(waft: Waft, *extra: str) -> Iterator[dict[str, str]]:
    """`waft up --detached …`; its URLs once its log says it is up; `waft down` (checked) on the way out."""
    # --verbose before the command: the detached child must still get the words after `up` (a fixed bug)
    done = waft.run("--verbose", "up", "--detached", "--nats-port", "0", "--bindle-address", "127.0.0.1:0",
                    "--no-dashboard", *extra)
    assert "lattice starting in the background" in done.stdout, done.stdout
    pid = int((waft.home / "up.pid").read_text())
    try:
        yield wait_ready(waft.home / "up.log", attempts=1200)
    finally:
        try:
            stopped = waft.run("down")
        except BaseException:  # a failing `down` must not leave the lattice behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            raise
    assert "lattice stopped" in stopped.stdout, stopped.stdout
    assert not (waft.home / "up.pid").exists()
    wait_lattice_stopped(waft.home)


def test_every_readme_command_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with docker_registry(tmp_path / "registry") as registry:
        env = {k: v for k, v in os.environ.items() if k not in ("BINDLE_URL", "WAFT_BINDLE_URL", "WAFT_NATS_URL")}
        env["WAFT_OCI_ALLOWED_INSECURE"] = registry
        waft = Waft(home, env)
        signed, par = offline_commands(waft, tmp_path)
        echo_ref, http_ref = registry_commands(waft, tmp_path, registry, signed, par)
        with detached_lattice(waft, "--push-models") as urls:
            nats = ("--nats-url", urls["nats"])
            ctl_commands(waft, nats, echo_ref, http_ref)
            app_commands(waft, nats, tmp_path, signed)
            host_command(waft, nats, tmp_path)
            model_commands(waft, urls["bindle"], tmp_path)
        assert processes_mentioning(str(home)) == []
        assert "no detached lattice is recorded" in waft.error("down")
        with socket.socket() as taken:  # a detached start that fails says so (it used to report success)
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            error = waft.error("up", "--detached", "--nats-port", str(port), "--no-bindle", "--no-dashboard")
        assert f"exited during start: port {port} is in use" in error, error
        assert not (home / "up.pid").exists()
    untested = sorted(" ".join(form) for form in readme_commands() if not waft.covered(form))
    assert untested == [], f"README commands that no test here runs: {untested}"


def offline_commands(waft: Waft, tmp_path: Path) -> tuple[Path, Path]:
    """keys gen|get|list, claims sign|inspect, par create|inspect (local files only)."""
    generated = waft.json("keys", "gen", "account")
    assert generated["public_key"].startswith("A") and generated["seed"].startswith("SA")  # type: ignore[index]
    saved = waft.json("keys", "gen", "module", "--name", "readme_module")
    got = waft.json("keys", "get", "readme_module")
    assert got["public_key"] == saved["public_key"] and got["role"] == "module"  # type: ignore[index]
    assert "readme_module" in {k["name"] for k in waft.json("keys", "list")}  # type: ignore[union-attr,index]
    assert "no key named 'nosuch'" in waft.error("keys", "get", "nosuch")

    signed = tmp_path / "echo_readme_s.wasm"
    done = waft.run("claims", "sign", str(ROOT / "build" / "actors" / "echo.wasm"), "-q", "-n", "Echo",
                    "-s", "readme_module", "-d", str(signed))
    assert "Successfully signed" in done.stdout and HTTP in done.stdout
    claims = waft.json("claims", "inspect", str(signed))
    assert claims["name"] == "Echo" and claims["module"] == saved["public_key"]  # type: ignore[index]
    assert HTTP in claims["capabilities"]  # type: ignore[index]
    jwt = waft.run("claims", "inspect", str(signed), "--jwt-only").stdout.strip()
    assert jwt.count(".") == 2

    par = tmp_path / "http_server.par.gz"
    created = waft.json("par", "create", "-c", HTTP, "-v", "waft", "-n", "HTTP Server", "--module", "waft_httpserver",
                        "--source", str(ROOT / "providers" / "httpserver"), "--version", "0.1.0", "--compress",
                        "-d", str(par))
    assert created["destination"] == str(par) and par.is_file()  # type: ignore[index]
    inspected = waft.json("par", "inspect", str(par))
    assert inspected["verified"] and list(inspected["target_hashes"]) == ["py3-none-any"]  # type: ignore[index]
    return signed, par


def registry_commands(waft: Waft, tmp_path: Path, registry: str, signed: Path, par: Path) -> tuple[str, str]:
    """reg push|pull, par inspect by ref."""
    echo_ref, http_ref = f"{registry}/waft/echo-readme:0.1.0", f"{registry}/waft/http-readme:0.1.0"
    assert waft.json("reg", "push", echo_ref, str(signed), "--insecure")["kind"] == "actor"  # type: ignore[index]
    done = waft.run("reg", "push", http_ref, str(par), "--insecure")
    assert "provider" in done.stdout and "digest: sha256:" in done.stdout, done.stdout
    pulled = tmp_path / "pulled.wasm"
    waft.run("reg", "pull", echo_ref, "--insecure", "--destination", str(pulled))
    assert pulled.read_bytes() == signed.read_bytes()
    assert waft.json("par", "inspect", http_ref, "--insecure")["name"] == "HTTP Server"  # type: ignore[index]
    assert "latest" in waft.error("reg", "pull", f"{registry}/waft/echo-readme:latest", "--insecure")
    return echo_ref, http_ref


def ctl_commands(waft: Waft, nats: tuple[str, ...], echo_ref: str, http_ref: str) -> None:
    """ctl get …, start actor|provider (by OCI ref), link put|query|del, call, scale, stop; bench load."""
    (host,) = waft.json("ctl", "get", "hosts", *nats)  # type: ignore[misc]
    host_id = host["id"]
    assert host_id in waft.run("ctl", "get", "hosts", *nats).stdout
    assert "started" in waft.run("ctl", "start", "actor", echo_ref, "--count", "2", *nats).stdout
    assert "started" in waft.run("ctl", "start", "provider", http_ref, *nats, "-t", "10000").stdout
    (inventory,) = waft.json("ctl", "get", "inventory", *nats)  # type: ignore[misc]
    (actor,) = inventory["actors"]
    (provider,) = inventory["providers"]
    assert actor["image_ref"] == echo_ref and len(actor["instances"]) == 2
    assert provider["image_ref"] == http_ref
    assert "Host " + host_id in waft.run("ctl", "get", "inventory", host_id, *nats).stdout
    claims = waft.json("ctl", "get", "claims", *nats)
    assert actor["id"] in {c["sub"] for c in claims}  # type: ignore[union-attr,index]

    port = free_port()
    waft.run("ctl", "link", "put", actor["id"], provider["id"], HTTP, f"address=127.0.0.1:{port}", *nats)
    (link,) = waft.json("ctl", "link", "query", *nats)  # type: ignore[misc]
    assert link["values"] == {"address": f"127.0.0.1:{port}"} and link["provider_id"] == provider["id"]
    assert waft.json("ctl", "get", "links", *nats) == [link]
    body = poll(lambda: get(f"http://127.0.0.1:{port}/hello?x=1"), "the echo app serving")
    assert json.loads(body)["path"] == "/hello"

    request = json.dumps({"method": "GET", "path": "/called", "queryString": "a=1", "header": {}, "body": ""})
    answer = waft.json("ctl", "call", actor["id"], "HttpServer.HandleRequest", request, *nats)
    assert answer["statusCode"] == 200, answer  # type: ignore[index]
    assert json.loads(answer["body"])["path"] == "/called"  # type: ignore[index]
    data = waft.home.parent / "request.json"
    data.write_text(request)
    answer = waft.json("call", actor["id"], "HttpServer.HandleRequest", "--data", str(data), *nats)  # wash call
    assert json.loads(answer["body"])["path"] == "/called"  # type: ignore[index]

    load = waft.json("bench", "load", f"http://127.0.0.1:{port}/load", "--rate", "10", "--duration", "1",
                     "--method", "GET")
    assert load["errors"] == {} and load["ok"] == load["sent"] == 10, load  # type: ignore[index]

    waft.run("ctl", "scale", "actor", host_id, actor["id"], echo_ref, "-c", "1", *nats)

    def scaled() -> bool:
        (inv,) = waft.json("ctl", "get", "inventory", *nats)  # type: ignore[misc]
        return [len(a["instances"]) for a in inv["actors"]] == [1]

    poll(scaled, "the actor scaled to 1", attempts=100)
    waft.run("ctl", "link", "del", actor["id"], HTTP, *nats)
    assert waft.json("ctl", "link", "query", *nats) == []
    waft.run("ctl", "stop", "actor", host_id, actor["id"], *nats)
    waft.run("ctl", "stop", "provider", host_id, provider["id"], *nats)
    (inventory,) = waft.json("ctl", "get", "inventory", *nats)  # type: ignore[misc]
    assert inventory["actors"] == [] and inventory["providers"] == [], inventory


def app_commands(waft: Waft, nats: tuple[str, ...], tmp_path: Path, signed: Path) -> None:
    """app deploy|status|list|undeploy with a small manifest (file refs)."""
    port = free_port()
    manifest = tmp_path / "echo-app.yaml"
    manifest.write_text(f"""name: echo-readme
version: 0.2.0
actors:
  - name: echo
    image: {signed.name}
    count: 2
providers:
  - name: http
    image: python:waft_httpserver
links:
  - actor: echo
    provider: http
    contract: {HTTP}
    values: {{address: "127.0.0.1:{port}"}}
""")
    assert waft.json("app", "put", str(manifest), *nats)["actions"] == ["version 0.2.0 stored"]  # type: ignore
    deployed = waft.json("app", "deploy", "echo-readme", *nats, "-t", "10000")  # by name, as wash app deploy
    assert len(deployed["actions"]) == 3, deployed  # type: ignore[index]
    rows = waft.json("app", "status", str(manifest), *nats)
    assert [(r["name"], r["running"], r["ok"]) for r in rows] == [("echo", 2, True), ("http", 1, True)]  # type: ignore
    assert [a["name"] for a in waft.json("app", "list", *nats)] == ["echo-readme"]  # type: ignore[union-attr,index]
    stored = waft.json("app", "get", "echo-readme", *nats)
    assert (stored["apiVersion"], stored["kind"]) == ("core.oam.dev/v1beta1", "Application"), stored  # type: ignore
    assert [(h["version"], h["deployed"]) for h in waft.json("app", "history", "echo-readme", *nats)] == [  # type: ignore
        ("0.2.0", True)]
    poll(lambda: get(f"http://127.0.0.1:{port}/app"), "the deployed app serving")
    assert "stopped provider http" in waft.run("app", "undeploy", "echo-readme", *nats).stdout
    assert [a["status"] for a in waft.json("app", "list", *nats)] == ["undeployed"]  # type: ignore[union-attr,index]
    assert waft.json("app", "del", "echo-readme", *nats) == {"app": "echo-readme", "deleted": "all"}
    assert waft.json("app", "list", *nats) == []
    assert "cannot read" in waft.error("app", "status", str(tmp_path / "nosuch.yaml"), *nats)


def host_command(waft: Waft, nats: tuple[str, ...], tmp_path: Path) -> None:
    """`waft host` joins the lattice; `ctl stop host` stops it again."""
    log = tmp_path / "host.log"
    waft.ran.append(("host",))
    with log.open("wb") as out:
        proc = subprocess.Popen([WAFT, "host", *nats], env=waft.env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        poll(lambda: "joined lattice" in log.read_text() or proc.poll() is not None, "the second host joining")
        assert proc.poll() is None, log.read_text()
        joined = re.search(r"host (N\w{55}) joined", log.read_text())
        assert joined, log.read_text()
        poll(lambda: len(waft.json("ctl", "get", "hosts", *nats)) == 2, "two hosts answering")  # type: ignore
        waft.run("ctl", "stop", "host", joined.group(1), *nats)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def model_commands(waft: Waft, bindle_url: str, tmp_path: Path) -> None:
    """models list|push|add|fetch, and bindle search|info|get-invoice against the lattice's bindle server."""
    listed = {m["route"]: m for m in waft.json("models", "list")}  # type: ignore[union-attr,index]
    assert listed["effnetlite0"]["status"] == "built" and listed["effnetlite0"]["bindle_id"] == \
        "efficientnet-lite0/0.1.0"
    pushed = waft.json("models", "push", "identity", "--bindle-url", bindle_url)
    assert pushed == [{"route": "identity", "bindle_id": "identity_model/0.2.0", "invoice": "exists",  # up pushed it
                       "uploaded": 0, "present": pushed[0]["present"]}], pushed  # type: ignore[index]
    zoo = next(route for route, m in listed.items() if m["status"] == "missing")
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    assert f"refusing {bogus}" in waft.error("models", "add", zoo, str(bogus))
    closed = f"http://127.0.0.1:{free_port()}/model.onnx"
    error = waft.error("models", "fetch", zoo, "--url", closed, "--timeout", "10")
    assert error.startswith("error: cannot download") and f"waft models add {zoo} FILE" in error, error

    server = ("-s", bindle_url)
    found = waft.json("bindle", *server, "search", "-q", "efficientnet-lite0")
    assert "efficientnet-lite0" in json.dumps(found)
    info = waft.run("bindle", *server, "info", "identity_model/0.2.0").stdout
    assert 'name = "identity_model"' in info, info
    invoice = waft.run("bindle", *server, "get-invoice", "identity_model/0.2.0", "-O", "-").stdout
    assert "[[parcel]]" in invoice, invoice
    assert "not found" in waft.error("bindle", *server, "info", "nosuch/9.9.9").lower()


def try_it_commands() -> list[str]:
    """The commands of the first `sh` block under "## Try it", continuation lines joined (what a user pastes)."""
    section = (ROOT / "README.md").read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_every_try_it_line_runs_against_the_ml_app(tmp_path: Path) -> None:
    commands = try_it_commands()
    assert len(commands) >= 5, commands
    # a newcomer pastes them as they are: no placeholder to fill in (those lines are in the next block)
    placeholder = re.compile(r"\b(NAME|MODEL|FILE|URL|ACTOR|REF|PORT)\b")
    assert [c for c in commands if placeholder.search(c.split("#")[0])] == [], commands
    made = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "build/cat.jpg"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0 and (ROOT / "build" / "cat.jpg").is_file(), made.stderr

    port = free_port()
    manifest = ml_manifest(tmp_path / "ml-app.yaml", port=port)  # deploy/ml-app.yaml, on a port of this test's
    with running_lattice(tmp_path, "--push-models", "--app", str(manifest)):
        wait_http(f"http://127.0.0.1:{port}/v2/models/effnetlite0/ready")
        checked: dict[str, object] = {}
        for command in commands:
            line = command.split(" #", 1)[0].strip().replace("localhost:8078", f"127.0.0.1:{port}")
            done = subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, timeout=120)
            assert done.returncode == 0, (command, done.stderr)
            answer = json.loads(done.stdout)
            assert not (isinstance(answer, dict) and "error" in answer), (command, answer)
            checked[command] = answer
        untested = [c for c in commands if not any(check(c, checked[c]) for check in TRY_IT_CHECKS)]
        assert untested == [], f"README lines no check here judges: {untested}"


def _matches(command: str, answer: object) -> bool:
    if "/effnetlite0/matches" not in command:
        return False
    k = int(re.search(r"k=(\d+)", command).group(1)) if "k=" in command else 5  # type: ignore[union-attr]
    assert isinstance(answer, list) and len(answer) == k, answer
    assert all(set(m) == {"label", "probability"} for m in answer), answer
    assert "cat" in answer[0]["label"], answer  # scikit-image's chelsea is a tabby
    return True


def _identity(command: str, answer: object) -> bool:
    if "/identity" not in command:
        return False
    sent = json.loads(re.search(r"-d '([^']+)'", command).group(1))  # type: ignore[union-attr]
    assert isinstance(answer, dict) and answer["tensor"]["data"] == sent["data"], answer
    assert answer["tensor"]["dimensions"] == sent["dimensions"], answer
    return True


def _models(command: str, answer: object) -> bool:
    if not command.split("#")[0].rstrip().endswith("/models"):
        return False
    assert isinstance(answer, dict)
    effnet = next(m for m in answer["models"] if m["name"] == "effnetlite0")
    assert effnet["status"] == "ready", effnet
    # "their state and the input spec in use", as the README's comment says
    assert effnet["inputSpec"]["size"] == [224, 224] and effnet["inputSpec"]["layout"] == "NCHW", effnet
    assert effnet["inputSpecSource"], effnet
    return True


def _v2_metadata(command: str, answer: object) -> bool:
    if "/v2/models/effnetlite0" not in command:
        return False
    assert isinstance(answer, dict) and answer["name"] == "effnetlite0" and answer["platform"], answer
    assert [i["shape"] for i in answer["inputs"]] == [[1, 3, 224, 224]], answer
    return True


TRY_IT_CHECKS = (_matches, _identity, _models, _v2_metadata)


def test_docs_run_the_checkouts_python() -> None:
    """`python -m …` in a document means whatever `python` is first on PATH, which lacks every dependency."""
    bare = re.compile(r"(?<![\w/.-])python3? (-m |models/|tools/)")
    found = [f"{doc.name}:{n}: {line.strip()}" for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
             for n, line in enumerate(doc.read_text().splitlines(), 1) if bare.search(line)]
    assert found == []
