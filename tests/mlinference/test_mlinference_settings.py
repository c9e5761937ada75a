"""Link values: the original's config_b64/config_json zoo, plus limits, batching and the model source."""

from __future__ import annotations

import base64
import json

import pytest
from waft_mlinference.settings import BatchSettings, ModelOptions, SettingsError, load_settings

ZOO = {"models": {"zoo": {"identity": "identity_model/0.2.0", "plus3": "plus3/0.1.0"}}, "values": {"lazy_load": False}}


def test_config_b64_unpadded_and_case_insensitive_keys():
    text = base64.b64encode(json.dumps(ZOO).encode()).decode().rstrip("=")
    settings = load_settings({"CONFIG_B64": text}, env={})
    assert settings.zoo == ZOO["models"]["zoo"]
    assert settings.bindle_url is None and settings.model_dir is None
    assert settings.options_for("identity") == ModelOptions()


def test_config_json_overrides_config_b64():
    other = {"models": {"zoo": {"x": "x/1.0.0"}}}
    values = {"config_b64": base64.b64encode(json.dumps(other).encode()).decode(), "config_json": json.dumps(ZOO)}
    assert set(load_settings(values, env={}).zoo) == {"identity", "plus3"}


def test_source_precedence(tmp_path):
    values = {"config_json": json.dumps(ZOO)}
    env = {"BINDLE_URL": "http://env:8080/v1/", "WAFT_ML_MODEL_DIR": str(tmp_path)}
    assert load_settings(values, env={"BINDLE_URL": "http://env:8080/v1/"}).bindle_url == "http://env:8080/v1/"
    assert load_settings(values, env=env).model_dir == tmp_path
    linked = load_settings({**values, "bindle_url": "http://link/v1/"}, env=env)
    assert linked.bindle_url == "http://link/v1/" and linked.model_dir is None


def test_limits_layer_env_defaults_link_values_and_per_route():
    config = {"models": {**ZOO["models"], "defaults": {"max_queue": 5},
                         "options": {"plus3": {"max_concurrent": 1, "batch": {"max_items": 4, "max_delay_ms": 1}}}}}
    settings = load_settings({"config_json": json.dumps(config), "intra_op_threads": "2"},
                             env={"WAFT_ML_MAX_CONCURRENT": "3", "WAFT_ML_MAX_QUEUE": "9"})
    identity, plus3 = settings.options_for("identity"), settings.options_for("plus3")
    assert (identity.max_concurrent, identity.max_queue, identity.intra_op_threads, identity.batch) == (3, 5, 2, None)
    assert (plus3.max_concurrent, plus3.max_queue, plus3.batch) == (1, 5, BatchSettings(4, 1.0))


@pytest.mark.parametrize("values, fragment", [
    ({}, "hold no models"),
    ({"config_json": "{"}, "not JSON"),
    ({"config_b64": "!!"}, "not base64"),
    ({"config_json": json.dumps({"models": {"zoo": {"a": "no-version"}}})}, "is not '<bindle name>/<version>'"),
    ({"config_json": json.dumps({"models": {**ZOO["models"], "options": {"nope": {}}}})}, "names nope"),
    ({"config_json": json.dumps(ZOO), "max_concurrent": "0"}, "must be at least 1"),
    ({"config_json": json.dumps(ZOO), "execution_target": "fpga"}, "use cpu, gpu or tpu"),
    ({"config_json": json.dumps(ZOO), "model_dir": "/no/such/dir"}, "is not a directory"),
    ({"config_json": json.dumps(ZOO), "Max_Queue": "1", "max_queue": "2"}, "repeat the key"),
])
def test_bad_values_name_the_problem(values, fragment):
    with pytest.raises(SettingsError) as info:
        load_settings(values, env={})
    assert fragment in str(info.value)


def test_spin_wait_is_off_unless_asked_and_reads_as_a_boolean():
    config = {"models": {**ZOO["models"], "options": {"plus3": {"spin_wait": True}}}}
    settings = load_settings({"config_json": json.dumps(config)}, env={})
    assert (settings.options_for("identity").spin_wait, settings.options_for("plus3").spin_wait) == (False, True)
    from_link = load_settings({"config_json": json.dumps(ZOO), "spin_wait": "yes"}, env={})
    assert from_link.options_for("identity").spin_wait is True
    with pytest.raises(SettingsError) as info:
        load_settings({"config_json": json.dumps(ZOO)}, env={"WAFT_ML_SPIN_WAIT": "sometimes"})
    assert "spin_wait 'sometimes': expected true or false" in str(info.value)


@pytest.mark.parametrize("cores, max_concurrent, spin_wait, expected", [
    (2, 2, False, 2),   # the bench machine: each run may use both cores (workers sleep when idle)
    (2, 2, True, 1),    # spinning workers get an equal share, no more
    (16, 4, False, 8),  # twice the share
    (16, 4, True, 4),
    (4, 1, False, 4),   # never more than the cores
    (1, 4, False, 1),
])
def test_auto_threads_oversubscribe_only_when_workers_sleep(monkeypatch, cores, max_concurrent, spin_wait, expected):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert ModelOptions(max_concurrent=max_concurrent, spin_wait=spin_wait).threads_per_run == expected
    assert ModelOptions(max_concurrent=max_concurrent, intra_op_threads=3).threads_per_run == 3  # explicit wins
