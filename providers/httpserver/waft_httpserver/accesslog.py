"""One access-log line per request: text for people, one JSON object for log shippers.

The line is formatted here rather than by the root logging config, because the format is a per-link
setting (two links may want different ones) and the SDK owns the root logger's set-up. The lines go
to stderr, which the host passes through, under the logger `waft.httpserver.access`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass

LOGGER_NAME = "waft.httpserver.access"


def access_logger() -> logging.Logger:
    """The access logger with its own plain handler (the message already is the whole line)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


@dataclass(frozen=True)
class AccessEntry:
    method: str
    path: str
    status: int
    bytes: int
    ms: float
    remote: str
    listener: str
    actor: str
    error: str = ""


def _timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def format_entry(entry: AccessEntry, fmt: str, now: float | None = None) -> str:
    stamp = _timestamp(time.time() if now is None else now)
    if fmt == "json":
        fields = {"ts": stamp, "level": "info", "logger": LOGGER_NAME, "msg": "access", **entry.__dict__,
                  "ms": round(entry.ms, 3)}
        if not entry.error:
            fields.pop("error")
        return json.dumps(fields)
    line = (f"{stamp} {entry.remote} \"{entry.method} {entry.path}\" {entry.status} {entry.bytes} B "
            f"{entry.ms:.1f} ms listener={entry.listener} actor={entry.actor[:12]}")
    return f"{line} error={entry.error!r}" if entry.error else line


def log_access(entry: AccessEntry, fmt: str) -> None:
    access_logger().info(format_entry(entry, fmt))
