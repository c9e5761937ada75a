"""Link values are read as wasmCloud's httpserver reads them, plus Waft's limits; bad values are named."""

from __future__ import annotations

import base64
import json

import pytest
from waft_httpserver.settings import DEFAULT_MAX_BODY_BYTES, SettingsError, load_settings, parse_size


def test_defaults_match_wasmcloud_bind_and_waft_limits():
    s = load_settings({}, env={})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 20 * 1024 * 1024
    assert s.timeout_s == 30 and s.max_concurrent == 256 and s.log_format == "text" and not s.tls


@pytest.mark.parametrize(("values", "expected"), [
    ({"address": "0.0.0.0:8078"}, ("0.0.0.0", 8078)),
    ({"ADDRESS": "[::1]:9000"}, ("::1", 9000)),
    ({"port": "8081"}, ("127.0.0.1", 8081)),
    ({"PORT": "8082", "address": "0.0.0.0:1"}, ("127.0.0.1", 8082)),  # port wins, as in wasmCloud
    ({"config_json": json.dumps({"address": "0.0.0.0:7000"})}, ("0.0.0.0", 7000)),
    ({"config_b64": base64.b64encode(b'{"address":"10.0.0.1:7001"}').decode().rstrip("=")}, ("10.0.0.1", 7001)),
    ({"config_json": '{"address": "0.0.0.0:7000"}', "address": "127.0.0.1:7002"}, ("127.0.0.1", 7002)),
])
def test_address_sources_and_precedence(values, expected):
    s = load_settings(values, env={})
    assert (s.host, s.port) == expected


def test_limits_from_link_values_config_and_env():
    env = {"WAFT_HTTP_MAX_BODY_BYTES": "1m", "WAFT_HTTP_TIMEOUT_MS": "1500", "WAFT_HTTP_MAX_CONCURRENT": "4",
           "WAFT_LOG_FORMAT": "json"}
    s = load_settings({}, env=env)
    assert (s.max_body_bytes, s.timeout_s, s.max_concurrent, s.log_format) == (1024 * 1024, 1.5, 4, "json")
    s = load_settings({"Max_Body_Bytes": "10", "timeout_ms": "20", "MAX_CONCURRENT": "3", "log_format": "TEXT"},
                      env=env)
    assert (s.max_body_bytes, s.timeout_s, s.max_concurrent, s.log_format) == (10, 0.02, 3, "text")
    s = load_settings({"config_json": json.dumps({"max_content_len": "5k", "timeout_ms": 250})}, env=env)
    assert (s.max_body_bytes, s.timeout_s) == (5 * 1024, 0.25)
    assert load_settings({}, env={}, structured_logging=True).log_format == "json"


def test_tls_and_cors_from_config(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    config = {"tls": {"cert_file": str(cert), "priv_key_file": str(key)},
              "cors": {"allowed_origins": ["https://a.example/"], "allowed_methods": ["get", "PATCH"],
                       "exposed_headers": ["x-id"], "max_age_secs": 60}}
    s = load_settings({"config_json": json.dumps(config)}, env={})
    assert s.tls and s.cert_file == str(cert)
    assert s.cors.allowed_origins == ("https://a.example",)
    assert s.cors.allowed_methods == ("GET", "PATCH") and s.cors.max_age_secs == 60


@pytest.mark.parametrize(("values", "message"), [
    ({"address": "nonsense"}, "invalid address"),
    ({"port": "70000"}, "outside 0-65535"),
    ({"port": "http"}, "not a port number"),
    ({"port": "1", "PORT": "2"}, "case-insensitive"),
    ({"config_json": "{"}, "config_json: not JSON"),
    ({"config_json": "[1]"}, "expected a JSON object"),
    ({"config_b64": "!!!"}, "not base64"),
    ({"config_file": "/nonexistent/x.json"}, "cannot read config_file"),
    ({"config_json": '{"tls": {"cert_file": "/a"}}'}, "both 'cert_file' and 'priv_key_file'"),
    ({"config_json": '{"tls": {"cert_file": "c", "priv_key_file": "k"}}'}, "perhaps make the path absolute"),
    ({"config_json": '{"cors": {"allowed_methods": ["FETCH"]}}'}, "invalid CORS method"),
    ({"config_json": '{"cors": {"allowed_origins": ["a.example"]}}'}, "invalid cors origin"),
    ({"max_body_bytes": "lots"}, "invalid max body size"),
    ({"timeout_ms": "0"}, "must be above 0"),
    ({"log_format": "xml"}, "invalid log_format"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(values, env={})


def test_sizes():
    assert parse_size("500") == 500 and parse_size("5k") == 5120 and parse_size("2M") == 2 * 2**20
    assert parse_size("400m") == 400 * 2**20 and parse_size("3MiB") == 3 * 2**20
    with pytest.raises(SettingsError, match="ceiling"):
        parse_size("1000m")
