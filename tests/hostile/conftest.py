"""Fixtures of the hostile-input tests: each test gets an empty $WAFT_HOME (keys, caches) of its own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def hostile_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What a hostile input managed to write is then visible, and nothing leaks to other tests."""
    home = tmp_path / "waft-home"
    home.mkdir()
    monkeypatch.setenv("WAFT_HOME", str(home))
    for name in ("WAFT_KEYS", "BINDLE_URL", "WAFT_BINDLE_URL"):
        monkeypatch.delenv(name, raising=False)
    return home
