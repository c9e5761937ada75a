"""models/build.py is idempotent: an up-to-date route is left alone, a stale or broken one rebuilt."""

from __future__ import annotations

import os
from pathlib import Path

import build


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_rerun_changes_nothing(built_models: Path) -> None:
    before = {d.name: _mtimes(d) for d in built_models.iterdir() if d.is_dir()}
    index_before = (built_models / "index.json").stat().st_mtime_ns
    assert build.main([]) == 0
    assert {d.name: _mtimes(d) for d in built_models.iterdir() if d.is_dir()} == before
    assert (built_models / "index.json").stat().st_mtime_ns == index_before


def test_stale_or_incomplete_route_is_rebuilt(tmp_path: Path, built_models: Path) -> None:
    out = tmp_path / "out"
    assert build.main(["identity", "--out", str(out)]) == 0
    model = out / "identity" / "identity_input_output.onnx"
    assert model.read_bytes() == (built_models / "identity" / model.name).read_bytes()
    os.utime(model, ns=(0, 0))  # older than its recipe: stale
    assert build.main(["identity", "--out", str(out)]) == 0
    assert model.stat().st_mtime_ns > 0
    (out / "identity" / "invoice.toml").unlink()  # an interrupted build leaves no invoice
    assert build.main(["identity", "--out", str(out)]) == 0
    assert (out / "identity" / "invoice.toml").is_file()
    assert list((out / "identity").glob(".*")) == []
