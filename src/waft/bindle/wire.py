"""How the server speaks: TOML or JSON chosen by `Accept`, errors always as TOML `error = "..."`.

Mirrors v0.7.1's `reply` module so Rust clients (which parse with deny_unknown_fields and map status
codes to error kinds) read us exactly as they read bindle.
"""

from __future__ import annotations

import json
from typing import Any

import tomli_w
from aiohttp import web

TOML = "application/toml"
JSON = "application/json"


def pick_format(accept: str | None) -> str:
    """The first Accept entry whose subtype is toml or json wins (q ignored); anything else means TOML."""
    for entry in (accept or "").split(","):
        mime = entry.split(";", 1)[0].strip().lower()
        if "/" not in mime:
            continue
        subtype = mime.split("/", 1)[1]
        if subtype == "toml":
            return TOML
        if subtype == "json":
            return JSON
    return TOML


def serialized(request: web.Request, data: dict[str, Any], status: int = 200, *,
               json_data: dict[str, Any] | None = None) -> web.Response:
    """`json_data` lets JSON carry explicit nulls (e.g. `missing: null`) that TOML cannot express."""
    fmt = pick_format(request.headers.get("Accept"))
    if fmt == JSON:
        body = json.dumps(data if json_data is None else json_data)
    else:
        body = tomli_w.dumps(data)
    return web.Response(status=status, body=body.encode("utf-8"), headers={"Content-Type": fmt})


def error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=tomli_w.dumps({"error": message}).encode("utf-8"),
                        headers={"Content-Type": TOML})


def plain(status: int, text: str) -> web.Response:
    """warp's own rejections (404, 405, bad query string) are plain text, not TOML."""
    return web.Response(status=status, text=text, content_type="text/plain")
