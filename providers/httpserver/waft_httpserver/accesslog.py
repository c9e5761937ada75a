"""One access-log line per request: text for people, one JSON object for log shippers.

The line is formatted here rather than by the root logging config, because the format is a per-link
setting (two links may want different ones) and the SDK owns the root logger's set-up. The lines go
to stderr, which the host passes through, under the logger `waft.httpserver.access`.

Each request is also published, best effort, as an `AccessRecord` (`waft.interfaces.httpserver`, the
record's one definition) on `subjects.access_log(prefix)` for the dashboard's inference metrics, the
records of each interval in one message; a NATS problem drops the message, never the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from waft.config import int_setting
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

#: How long a record waits to share a message with the next ones (`WAFT_HTTP_ACCESS_BATCH_MS`; 0: only the
#: records of one event-loop turn share one). One message per request cost ~70 us of CPU per request in
#: the provider and nats-server (`docs/performance.md`); the dashboard's metrics do not need them sooner.
DEFAULT_BATCH_MS = 100
#: Records in one message at most: a full batch goes at once.
BATCH_MAX = 256
#: Messages being sent at once at most; past it, NATS is not keeping up and a batch is dropped.
MAX_SENDING = 8


class AccessPublisher:
    """Sends the records of each interval as one message, without making a request wait; drops (and
    counts in `dropped`) when NATS cannot keep up."""

    def __init__(self, publish: Callable[[str, bytes], Awaitable[None]], subject: str,
                 batch_ms: int | None = None) -> None:
        self._publish = publish
        self.subject = subject
        batch_ms = int_setting("http_access_batch_ms", DEFAULT_BATCH_MS) if batch_ms is None else batch_ms
        if batch_ms < 0:
            raise ValueError(f"access batch interval must be 0 ms or more, got {batch_ms}")
        self._interval_s = batch_ms / 1000
        self.dropped = 0
        self._batch: list[AccessRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, entry: AccessEntry) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing to send with
            self.dropped += 1
            return
        self._batch.append(AccessRecord.of(entry.method, entry.path, entry.status, entry.bytes, entry.ms))
        if len(self._batch) >= BATCH_MAX:
            self._send_batch()
        elif self._timer is None:
            self._timer = loop.call_later(self._interval_s, self._send_batch)

    def _send_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        if len(self._sending) >= MAX_SENDING:
            self.dropped += len(batch)
            return
        task = asyncio.get_running_loop().create_task(self._send(AccessRecord.encode_many(batch), len(batch)))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, data: bytes, count: int) -> None:
        try:
            await self._publish(self.subject, data)
        except Exception:  # best effort: a closed or reconnecting connection drops the batch
            self.dropped += count

    async def flush(self) -> None:
        """Send what waits now and wait for every send (on shutdown, before the connection drains)."""
        self._send_batch()
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=2)


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
