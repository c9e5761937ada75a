"""Link values -> the settings of one listener, read the way wasmCloud 0.x's httpserver provider reads them.

wasmCloud (`httpserver-rs/src/settings.rs load_settings`) takes, in this order, later winning:
`config_file` (JSON), `config_b64` (base64 JSON), `config_json` (JSON), then `address` and the legacy
`port` (which binds 127.0.0.1). Keys are case-insensitive. The JSON holds `address`, `tls`
{cert_file, priv_key_file}, `cors` {allowed_origins, allowed_headers, allowed_methods, exposed_headers,
max_age_secs}, `timeout_ms` and `max_content_len` ("10m" style). We accept all of that unchanged, so a
wasmCloud manifest works here, and add our own limits (`max_concurrent`, the per-client ones, `log_format`,
`access_log`).
Each limit falls back to a `WAFT_HTTP_*` environment variable, then to a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waft.provider.link_values import SettingsError, b64_json, json_object, lowercase_keys

DEFAULT_ADDRESS = "127.0.0.1:8000"  # wasmCloud's default bind
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_CONCURRENT = 256
#: A body must arrive within this (a slow sender holds a slot and memory while it trickles).
DEFAULT_BODY_TIMEOUT_MS = 10_000
#: Bytes of request bodies the listener holds at once (reserved by Content-Length before reading).
DEFAULT_MAX_BODIES_BYTES = 256 * 1024 * 1024
#: What one client address may hold (`admission.py`): requests in flight and body bytes reserved, each a quarter
#: of the listener's limit, so one client's slow or stuck requests leave the rest to others.
DEFAULT_MAX_CLIENT_CONCURRENT = 64
DEFAULT_MAX_CLIENT_BODIES_BYTES = 64 * 1024 * 1024
#: Calls one client may have at the actor while other clients use it too (more wait for their own).
DEFAULT_MAX_CLIENT_ACTIVE = 1
#: Actor time one client may use (ms per second, after a burst) while a client within its own share wants the
#: actor; a client alone is not held to it. A quarter of one core: on two cores a client over it no longer
#: doubles everyone else's latency.
DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S = 250
DEFAULT_MAX_CLIENT_ACTOR_BURST_MS = 1000
#: How long a request of a client over its share waits for it (an answer later beats a 429 that a careless
#: client would resend at once); a longer debt gets 429 with the Retry-After it needs.
DEFAULT_MAX_CLIENT_WAIT_MS = 5000
DEFAULT_CORS_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS")
DEFAULT_CORS_HEADERS = ("accept", "accept-language", "content-type", "content-language")
DEFAULT_CORS_MAX_AGE_S = 300
#: wasmCloud's ceiling for max_content_len: bodies go into wasm32 memory.
BODY_LIMIT_CEILING = 500 * 1024 * 1024
HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}


@dataclass(frozen=True)
class Cors:
    """Empty `allowed_origins` means any origin, as in wasmCloud's default."""

    allowed_origins: tuple[str, ...] = ()
    allowed_headers: tuple[str, ...] = DEFAULT_CORS_HEADERS
    allowed_methods: tuple[str, ...] = DEFAULT_CORS_METHODS
    exposed_headers: tuple[str, ...] = ()
    max_age_secs: int = DEFAULT_CORS_MAX_AGE_S


@dataclass(frozen=True)
class ListenerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    cert_file: str | None = None
    priv_key_file: str | None = None
    cors: Cors = field(default_factory=Cors)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_MS / 1000
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_MS / 1000
    max_bodies_bytes: int = DEFAULT_MAX_BODIES_BYTES
    max_client_concurrent: int = DEFAULT_MAX_CLIENT_CONCURRENT
    max_client_bodies_bytes: int = DEFAULT_MAX_CLIENT_BODIES_BYTES
    max_client_active: int = DEFAULT_MAX_CLIENT_ACTIVE
    max_client_actor_ms_per_s: int = DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S
    max_client_actor_burst_ms: int = DEFAULT_MAX_CLIENT_ACTOR_BURST_MS
    max_client_wait_ms: int = DEFAULT_MAX_CLIENT_WAIT_MS
    log_format: str = "text"
    access_log: bool = True

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return bool(self.cert_file and self.priv_key_file)


def parse_address(text: str) -> tuple[str, int]:
    """`0.0.0.0:8078`, `[::1]:8078` or `localhost:8078` -> (host, port)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise SettingsError(f"invalid address {text!r}: expected host:port, e.g. 0.0.0.0:8078")
    return host.strip("[]"), parse_port(port_text, what=f"address {text!r}")


def parse_port(text: str, *, what: str = "port") -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise SettingsError(f"invalid {what}: {text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"invalid {what}: {port} is outside 0-65535")
    return port


def parse_size(text: object, *, what: str = "max_content_len") -> int:
    """Bytes, or a number with k/m/g (multiples of 1024), as wasmCloud's `max_content_len`."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*", str(text))
    if not match:
        raise SettingsError(f"invalid {what} {text!r}: use bytes or a number with k, m or g (e.g. 20m)")
    size = int(match.group(1)) * 1024 ** " kmg".index((match.group(2) or " ").lower())
    if size > BODY_LIMIT_CEILING:
        raise SettingsError(f"invalid {what} {text!r}: above the {BODY_LIMIT_CEILING // 2**20} MiB ceiling")
    return size


def _positive_int(text: object, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise SettingsError(f"invalid {what} {text!r}: expected a whole number") from None
    if value <= 0:
        raise SettingsError(f"invalid {what} {value}: must be above 0")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,;]", value) if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"invalid cors.{what}: expected a list of strings")
    return tuple(v.strip() for v in value)


def _cors(data: object) -> Cors:
    if not isinstance(data, dict):
        raise SettingsError("invalid cors: expected a JSON object")
    data = {str(k).lower(): v for k, v in data.items()}
    cors = Cors()
    kwargs: dict[str, Any] = {}
    for name in ("allowed_origins", "allowed_headers", "allowed_methods", "exposed_headers"):
        if data.get(name) is not None:
            kwargs[name] = _strings(data[name], name)
    for origin in kwargs.get("allowed_origins", ()):
        if not re.fullmatch(r"https?://[^/\s]+/?", origin):
            raise SettingsError(f"invalid cors origin {origin!r}: expected http[s]://host[:port]")
    kwargs["allowed_origins"] = tuple(o.rstrip("/") for o in kwargs.get("allowed_origins", cors.allowed_origins))
    methods = tuple(m.upper() for m in kwargs.get("allowed_methods", cors.allowed_methods))
    bad = [m for m in methods if m not in HTTP_METHODS]
    if bad:
        raise SettingsError(f"invalid CORS method: {', '.join(map(repr, bad))}")
    kwargs["allowed_methods"] = methods
    if data.get("max_age_secs") is not None:
        kwargs["max_age_secs"] = _positive_int(data["max_age_secs"], "cors.max_age_secs")
    return Cors(**{**cors.__dict__, **kwargs})


def _merge_config(merged: dict[str, Any], config: dict[str, Any]) -> None:
    """Later configs override earlier ones field by field (tls and cors merge one level deeper)."""
    for key, value in config.items():
        if key in ("tls", "cors") and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **{str(k).lower(): v for k, v in value.items()}}
        else:
            merged[key] = value


def _lowered_json(text: str, what: str) -> dict[str, Any]:
    """The httpserver's config keys are case-insensitive like its link values."""
    return {str(k).lower(): v for k, v in json_object(text, what).items()}


def _lowered_b64(text: str) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in b64_json(text).items()}


def load_settings(values: Mapping[str, str], env: Mapping[str, str] | None = None,
                  *, structured_logging: bool = False) -> ListenerSettings:
    """Build one listener's settings from its link values; raise SettingsError naming what is wrong."""
    env = os.environ if env is None else env
    lowered = lowercase_keys(values)

    config: dict[str, Any] = {}
    if "config_file" in lowered:
        path = Path(lowered["config_file"])
        try:
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(f"cannot read config_file {str(path)!r}: {exc.strerror or exc}") from None
        _merge_config(config, _lowered_json(text, f"config_file {str(path)!r}"))
    if "config_b64" in lowered:
        _merge_config(config, _lowered_b64(lowered["config_b64"]))
    if "config_json" in lowered:
        _merge_config(config, _lowered_json(lowered["config_json"], "config_json"))
    # plain link values override the JSON config, as `address` and `port` do in wasmCloud
    for key in ("address", "max_content_len", "max_body_bytes", "timeout_ms", "max_concurrent", "log_format",
                "access_log", "body_timeout_ms", "max_bodies_bytes", "max_client_concurrent",
                "max_client_bodies_bytes", "max_client_active", "max_client_actor_ms_per_s",
                "max_client_actor_burst_ms", "max_client_wait_ms"):
        if key in lowered:
            config[key] = lowered[key]

    host, port = parse_address(DEFAULT_ADDRESS)
    if config.get("address") is not None:
        host, port = parse_address(str(config["address"]))
    if "port" in lowered:
        host, port = "127.0.0.1", parse_port(lowered["port"])

    tls = config.get("tls") or {}
    if not isinstance(tls, dict):
        raise SettingsError("invalid tls: expected a JSON object with cert_file and priv_key_file")
    cert, key = tls.get("cert_file"), tls.get("priv_key_file")
    if bool(cert) != bool(key):
        raise SettingsError("for tls, both 'cert_file' and 'priv_key_file' must be set")
    for what, path in (("cert_file", cert), ("priv_key_file", key)):
        if path and not Path(path).is_file():
            hint = "" if Path(path).is_absolute() else " (perhaps make the path absolute)"
            raise SettingsError(f"missing tls.{what} {path!r}{hint}")

    body_limit = config.get("max_body_bytes", config.get("max_content_len"))
    if body_limit is None:
        body_limit = env.get("WAFT_HTTP_MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES
    def limit(key: str, default: object) -> object:
        """A link value (or config JSON) first, then WAFT_HTTP_<KEY>, then the default."""
        return config.get(key) or env.get(f"WAFT_HTTP_{key.upper()}") or default

    timeout_ms = limit("timeout_ms", DEFAULT_TIMEOUT_MS)
    concurrent = limit("max_concurrent", DEFAULT_MAX_CONCURRENT)
    body_timeout_ms = limit("body_timeout_ms", DEFAULT_BODY_TIMEOUT_MS)
    bodies = limit("max_bodies_bytes", DEFAULT_MAX_BODIES_BYTES)
    client_concurrent = limit("max_client_concurrent", DEFAULT_MAX_CLIENT_CONCURRENT)
    client_bodies = limit("max_client_bodies_bytes", DEFAULT_MAX_CLIENT_BODIES_BYTES)
    client_active = limit("max_client_active", DEFAULT_MAX_CLIENT_ACTIVE)
    actor_rate = limit("max_client_actor_ms_per_s", DEFAULT_MAX_CLIENT_ACTOR_MS_PER_S)
    actor_burst = limit("max_client_actor_burst_ms", DEFAULT_MAX_CLIENT_ACTOR_BURST_MS)
    client_wait = limit("max_client_wait_ms", DEFAULT_MAX_CLIENT_WAIT_MS)
    log_format = str(config.get("log_format") or env.get("WAFT_LOG_FORMAT")
                     or ("json" if structured_logging else "text")).lower()
    if log_format not in ("text", "json"):
        raise SettingsError(f"invalid log_format {log_format!r}: use text or json")
    access_log = str(config.get("access_log", "true")).lower() not in ("0", "false", "no", "off")

    return ListenerSettings(
        host=host, port=port, cert_file=cert or None, priv_key_file=key or None,
        cors=_cors(config["cors"]) if config.get("cors") is not None else Cors(),
        max_body_bytes=parse_size(body_limit, what="max body size"),
        timeout_s=_positive_int(timeout_ms, "timeout_ms") / 1000,
        max_concurrent=_positive_int(concurrent, "max_concurrent"),
        body_timeout_s=_positive_int(body_timeout_ms, "body_timeout_ms") / 1000,
        max_bodies_bytes=parse_size(bodies, what="max bytes of bodies in flight"),
        max_client_concurrent=_positive_int(client_concurrent, "max_client_concurrent"),
        max_client_bodies_bytes=parse_size(client_bodies, what="max_client_bodies_bytes"),
        max_client_active=_positive_int(client_active, "max_client_active"),
        max_client_actor_ms_per_s=_positive_int(actor_rate, "max_client_actor_ms_per_s"),
        max_client_actor_burst_ms=_positive_int(actor_burst, "max_client_actor_burst_ms"),
        max_client_wait_ms=_positive_int(client_wait, "max_client_wait_ms"),
        log_format=log_format, access_log=access_log)
