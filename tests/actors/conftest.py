"""Fixtures for the actor tests: the built actors (built on demand) and a shared wasmtime runtime."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from waft.host.wapc import Runtime, WapcModule

ROOT = Path(__file__).resolve().parents[2]


def load_build_script() -> ModuleType:
    """actors/build.py is a script, not a package module: import it by path."""
    spec = importlib.util.spec_from_file_location("waft_actors_build", ROOT / "actors" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_script() -> ModuleType:
    return load_build_script()


@pytest.fixture(scope="session")
def built(build_script: ModuleType) -> dict[str, tuple[Path, Path]]:
    """Build (incrementally: free when fresh) so tests always run against the current sources."""
    return build_script.build()


@pytest.fixture(scope="session")
def runtime() -> Iterator[Runtime]:
    rt = Runtime()
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def echo_module(runtime: Runtime, built: dict[str, tuple[Path, Path]]) -> WapcModule:
    return runtime.compile(built["echo"][0].read_bytes())


@pytest.fixture(scope="session")
def hostcheck_module(runtime: Runtime, built: dict[str, tuple[Path, Path]]) -> WapcModule:
    return runtime.compile(built["hostcheck"][0].read_bytes())
