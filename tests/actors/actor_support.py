"""Shared setup of the actor tests: the built actors (built on demand) and one wasmtime runtime.

Not a conftest.py on purpose: other suites do `from conftest import ...`, and a second conftest module
would shadow the root one under pytest's default import mode. Test modules call these cached helpers
from thin local fixtures, so every module shares one build and one runtime.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from waft.host.wapc import Runtime, WapcModule

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def load_build_script() -> ModuleType:
    """actors/build.py is a script, not a package module: import it by path."""
    spec = importlib.util.spec_from_file_location("waft_actors_build", ROOT / "actors" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@functools.cache
def build_all() -> dict[str, tuple[Path, Path]]:
    """Build (incrementally: free when fresh) once per session, so tests run the current sources."""
    return load_build_script().build()


@functools.cache
def shared_runtime() -> Runtime:
    """One engine for all actor tests; its epoch thread is a daemon and dies with the process."""
    return Runtime()


@functools.cache
def compiled(name: str, *, signed: bool = False) -> WapcModule:
    """A built actor compiled in the shared runtime."""
    return shared_runtime().compile(build_all()[name][1 if signed else 0].read_bytes())
