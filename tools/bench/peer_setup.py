"""The peer for issue 9's end-to-end benchmark, and the in-process baseline both are held to.

- `ensure_venv()`: build/peer/venv with BentoML and the same onnxruntime/Pillow/numpy as ours, pinned,
  created once (a stamp file records the pins; a changed pin rebuilds it). Its deps never touch .venv.
- `PeerServer`: `bentoml serve` of tools/bench/peer/bentoml_service.py on 127.0.0.1:<free port>, in
  its own process group, ready when /readyz answers and a real image classifies; stopped (the whole
  group, TERM then KILL) on exit, also on failure.
- `in_process_pipeline()`: "our own in-process pipeline": the same Pillow + numpy preprocessing,
  onnxruntime session and softmax/top-5, called directly from Python, no HTTP.
- `ensure_photos()`: the benchmark photos (scikit-image's chelsea, coffee, astronaut, rocket, JPEG q90).
- `render_plot()`: runs tools/bench/peer/plot_latency.py in the peer venv (matplotlib lives there).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.paths import MODELS, ROOT

PEER_DIR = ROOT / "build" / "peer"
VENV = PEER_DIR / "venv"
PEER_CODE = Path(__file__).resolve().parent / "peer"
MODEL_DIR = MODELS / "effnetlite0"
PHOTOS_DIR = ROOT / "build" / "bench-photos"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")

#: What the peer venv holds. onnxruntime, Pillow and numpy are the versions .venv pins, so the peer and the
#: in-process baseline run the same kernels; matplotlib renders docs/benchmarks/latency.png.
PEER_PINS = ("bentoml==1.4.40", "onnxruntime==1.32.0", "pillow==13.0.0", "numpy==2.4.6", "matplotlib==3.11.2")
#: Packages that must not come in with the peer (a GPU stack would dwarf the venv and change the comparison).
FORBIDDEN = ("torch", "tensorflow", "nvidia-cuda", "nvidia-cudnn", "nvidia-cublas", "triton")
STAMP = VENV / ".waft-peer-pins"
SERVICE = "bentoml_service:Classifier"


class PeerError(RuntimeError):
    """The peer cannot be set up or started; the message says what happened."""


def venv_python() -> Path:
    return VENV / "bin" / "python"


def _log(message: str) -> None:
    print(f"  peer: {message}", file=sys.stderr, flush=True)


def ensure_venv(*, python: str | None = None) -> Path:
    """Create build/peer/venv with PEER_PINS unless it already holds exactly them; return its python."""
    wanted = "\n".join(PEER_PINS) + "\n"
    if STAMP.is_file() and STAMP.read_text() == wanted and venv_python().exists():
        return venv_python()
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    base = python or _base_python()
    _log(f"creating {VENV.relative_to(ROOT)} ({', '.join(PEER_PINS)}); takes about a minute")
    if not venv_python().exists():
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "--no-input"]
    report = PEER_DIR / "pip-report.json"
    log = PEER_DIR / "pip.log"
    # Dry run first: refuse a resolution that would pull a GPU framework into the peer.
    _pip([*pip, "install", "--dry-run", "--report", str(report), *PEER_PINS], log)
    names = sorted(item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"])
    bad = [n for n in names if n.startswith(FORBIDDEN)]
    if bad:
        raise PeerError(f"the peer's dependencies would pull in {', '.join(bad)}; refusing to install")
    _pip([*pip, "install", *PEER_PINS], log)
    freeze = subprocess.run([*pip, "freeze", "--all"], check=True, capture_output=True, text=True).stdout
    (PEER_DIR / "freeze.txt").write_text(freeze)
    STAMP.write_text(wanted)
    return venv_python()


def _pip(command: list[str], log: Path) -> None:
    """Run pip with its output in `log` (pip is chatty); on failure the error names the log and its tail."""
    with open(log, "ab") as out:
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise PeerError(f"pip failed ({code}) creating the peer venv; see {log}:\n{tail}")


def _base_python() -> str:
    """The interpreter .venv was made from (a venv inside a venv would inherit nothing, but be explicit)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable


def peer_versions() -> dict[str, str]:
    """Versions installed in the peer venv, from the freeze ensure_venv wrote."""
    freeze = PEER_DIR / "freeze.txt"
    versions: dict[str, str] = {}
    if freeze.is_file():
        for line in freeze.read_text().splitlines():
            name, sep, version = line.partition("==")
            if sep:
                versions[name.lower()] = version
    return versions


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_photos() -> list[Path]:
    """build/bench-photos/<name>.jpg for scikit-image's sample photos (JPEG quality 90); made once."""
    PHOTOS_DIR.mkdir(parents=True, exist_ok=True)
    paths = [PHOTOS_DIR / f"{name}.jpg" for name in PHOTOS]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        import skimage.data
        from PIL import Image

        for path in missing:
            pixels = getattr(skimage.data, path.stem)()
            tmp = path.with_name(f".{path.name}.part")
            Image.fromarray(pixels).convert("RGB").save(tmp, format="JPEG", quality=90)
            tmp.replace(path)
    return paths


def in_process_pipeline(model_dir: Path = MODEL_DIR, *, floor: bool = False) -> Any:
    """The baseline: tools.bench.peer.pipeline.Pipeline, loaded here; `.matches(body)` does the whole request.

    `floor`: the physical floor of the same work, one onnxruntime thread that sleeps instead of spinning
    (inter- and intra-op), so its CPU per request is the least any server can spend on it here.
    """
    import onnxruntime as ort

    from tools.bench.peer.pipeline import Pipeline

    if not (model_dir / "metadata.json").is_file():
        raise PeerError(f"{model_dir} has no model; run `make models`")
    if not floor:
        return Pipeline(model_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return Pipeline(model_dir, session_options=options)


class PeerServer:
    """`bentoml serve` of the peer service, started and stopped as one process group."""

    def __init__(self, model_dir: Path = MODEL_DIR, *, port: int | None = None, route: str = "effnetlite0",
                 ready_timeout: float = 90.0) -> None:
        self.model_dir = model_dir
        self.port = port or free_port()
        self.route = route
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = PEER_DIR / "serve.log"
        self.started_in: float = float("nan")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.route}/matches"

    def start(self) -> PeerServer:
        python = ensure_venv()
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WAFT_PEER_MODEL_DIR": str(self.model_dir), "WAFT_PEER_ROUTE": self.route,
               "BENTOML_HOME": str(PEER_DIR / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True",
               "PYTHONDONTWRITEBYTECODE": "1"}
        for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):  # .venv's settings must not leak into the peer
            env.pop(key, None)
        env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        command = [str(python), "-m", "bentoml", "serve", SERVICE, "--working-dir", str(PEER_CODE),
                   "--host", "127.0.0.1", "--port", str(self.port)]
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, cwd=PEER_CODE, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        probe = ensure_photos()[0].read_bytes()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PeerError(f"the peer exited with {self.process.returncode} before it was ready; "
                                f"see {self.log_path}:\n{self._log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        request = urllib.request.Request(self.url, data=probe, method="PUT")
                        with urllib.request.urlopen(request, timeout=30) as answer:
                            if answer.status == 200 and json.loads(answer.read()):
                                return
            time.sleep(0.1)
        raise PeerError(f"the peer was not ready within {self.ready_timeout:g} s; see {self.log_path}:\n"
                        f"{self._log_tail()}")

    def _log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """TERM the whole group (bentoml's arbiter and its workers), KILL what is left after `timeout`."""
        process, self.process = self.process, None
        if process is None:
            return
        stop_group(process, timeout)

    def __enter__(self) -> PeerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_group(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a child started with start_new_session=True and every process of its group."""
    pgid = process.pid  # a session leader's group id is its pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def peer_server(model_dir: Path = MODEL_DIR) -> Iterator[PeerServer]:
    server = PeerServer(model_dir)
    with server:
        yield server


def render_plot(data: dict[str, Any], out: Path) -> Path:
    """Draw the latency-vs-offered-rate plot with the peer venv's matplotlib; `data` as plot_latency.py reads it."""
    python = ensure_venv()
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["MPLCONFIGDIR"] = str(PEER_DIR / "mplconfig")
    subprocess.run([str(python), str(PEER_CODE / "plot_latency.py"), str(out)], input=json.dumps(data).encode(),
                   env=env, check=True, timeout=120)
    return out
