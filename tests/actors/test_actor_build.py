"""actors/build.py: discovery, incremental builds, loud failures."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

import pytest
from actor_support import build_all, load_build_script


@pytest.fixture()
def build_script() -> ModuleType:
    return load_build_script()


@pytest.fixture()
def built() -> dict[str, tuple[Path, Path]]:
    return build_all()


def test_discovers_the_echo_and_hostcheck_actors(build_script: ModuleType) -> None:
    names = {spec.name for spec in build_script.discover()}
    assert {"echo", "hostcheck"} <= names


def test_second_build_is_a_no_op(build_script: ModuleType, built: dict[str, tuple[Path, Path]]) -> None:
    before = {p: p.stat().st_mtime_ns for pair in built.values() for p in pair}
    again = build_script.build()
    assert again == built
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_touched_sdk_source_triggers_a_rebuild(build_script: ModuleType, built: dict[str, tuple[Path, Path]],
                                               tmp_path: Path) -> None:
    spec = next(s for s in build_script.discover() if s.name == "hostcheck")
    out = tmp_path / "hostcheck.wasm"
    build_script.compile_actor(spec, out)
    assert not build_script._needs_compile(spec, out)
    header = build_script.SDK_DIR / "waft_buf.h"
    stat = header.stat()
    try:  # pretend the header changed after the output was built, without changing its bytes
        os.utime(header, (stat.st_atime, time.time() + 5))
        assert build_script._needs_compile(spec, out)
    finally:
        os.utime(header, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_compile_error_fails_loudly_with_the_compiler_message(build_script: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "broken.c").write_text('#include "waft.h"\nvoid waft_actor_init(void) { nope(; }\n')
    (tmp_path / "actor.toml").write_text('name = "broken"\nsources = ["broken.c"]\ncaps = []\n')
    spec = build_script.ActorSpec.load(tmp_path / "actor.toml")
    out = tmp_path / "out" / "broken.wasm"
    with pytest.raises(build_script.BuildError, match=r"(?s)compiling actor 'broken' failed.*broken\.c.*error"):
        build_script.compile_actor(spec, out)
    assert not out.exists()
    assert not list(out.parent.iterdir())  # no temporary left behind


def test_actor_toml_errors_name_the_file(build_script: ModuleType, tmp_path: Path) -> None:
    toml = tmp_path / "actor.toml"
    toml.write_text('name = "x"\nsources = ["missing.c"]\n')
    with pytest.raises(build_script.BuildError, match=r"missing\.c"):
        build_script.ActorSpec.load(toml)
    toml.write_text('sources = []\n')
    with pytest.raises(build_script.BuildError, match="'name'"):
        build_script.ActorSpec.load(toml)
