"""The embedded server's Go threads (`procs`, `WAFT_NATS_PROCS`): one by default, as the server itself reports
on its monitoring endpoint (`/varz` gomaxprocs), any number when asked, Go's own choice with 0."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from waft.config import SettingError
from waft.embedded_nats import EmbeddedNats


def _gomaxprocs(server: EmbeddedNats) -> int:
    with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=10) as response:
        return int(json.load(response)["gomaxprocs"])


def test_one_go_thread_by_default_and_a_setting_for_more(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAFT_NATS_PROCS", raising=False)
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    with EmbeddedNats(monitor_port=-1) as server:
        assert _gomaxprocs(server) == 1
    monkeypatch.setenv("WAFT_NATS_PROCS", "2")
    with EmbeddedNats(monitor_port=-1) as server:
        assert _gomaxprocs(server) == 2
    monkeypatch.setenv("WAFT_NATS_PROCS", "0")
    with EmbeddedNats(monitor_port=-1) as server:
        assert _gomaxprocs(server) == (os.cpu_count() or 1)  # Go's default: one per core


def test_a_bad_setting_is_refused_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAFT_NATS_PROCS", "many")
    with pytest.raises(SettingError, match="WAFT_NATS_PROCS must be an integer"):
        EmbeddedNats()
    with pytest.raises(ValueError, match="0 \\(one per core\\) or more"):
        EmbeddedNats(procs=-1)
