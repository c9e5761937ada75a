"""One access-log line per request: text for people, one JSON object for log shippers.

The line is formatted here rather than by the root logging config, because the format is a per-link
setting (two links may want different ones) and the SDK owns the root logger's set-up. The lines go
to stderr, which the host passes through, under the logger `waft.httpserver.access`.

Each request is also published, best effort, as one `AccessRecord` (`waft.interfaces.httpserver`, the
record's one definition) on `subjects.access_log(prefix)` for the dashboard's inference metrics; a
NATS problem drops the message, never the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from waft.interfaces.httpserver import AccessRecord

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


# ---------------------------------------------------------------------------------------- NATS feed

MAX_PENDING = 1000


class AccessPublisher:
    """Sends one message per request without making the request wait; drops when NATS cannot keep up."""

    def __init__(self, publish: Callable[[str, bytes], Awaitable[None]], subject: str) -> None:
        self._publish = publish
        self.subject = subject
        self.dropped = 0
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, entry: AccessEntry) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        data = AccessRecord.of(entry.method, entry.path, entry.status, entry.bytes, entry.ms).encode()
        try:
            task = asyncio.get_running_loop().create_task(self._send(data))
        except RuntimeError:  # no loop (a synchronous caller): nothing to send with
            self.dropped += 1
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, data: bytes) -> None:
        try:
            await self._publish(self.subject, data)
        except Exception:  # best effort: a closed or reconnecting connection drops the message
            self.dropped += 1


_publisher: Callable[[AccessEntry], None] | None = None


def set_access_publisher(publisher: Callable[[AccessEntry], None] | None) -> None:
    global _publisher
    _publisher = publisher


def publish_access(entry: AccessEntry) -> None:
    if _publisher is not None:
        try:
            _publisher(entry)
        except Exception:  # never fail a request over its metrics
            logging.getLogger(LOGGER_NAME).debug("access event not published", exc_info=True)
