"""`waft host`: one more host on an existing lattice (scale-out)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from typing import Any

from waft.cli.output import add_lattice_flags, console, join_timeout_s, not_joined, parse_pairs


async def joined(task: asyncio.Task[Any], ready: Awaitable[Any], nats_url: str) -> bool:
    """True once `ready` is; False when `task` ended first without an error (stopped by a signal), its error
    when it failed; no readiness within the join timeout is a one-line error naming the NATS URL, not a bare
    TimeoutError, and `task` is cancelled."""
    waiting = asyncio.ensure_future(ready)
    try:
        done, _ = await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if task in done:
        task.result()  # raises what ended it
        return False
    try:
        waiting.result()
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise not_joined(nats_url) from None
    return True


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("host", help="run a host that joins an existing lattice")
    add_lattice_flags(parser)
    parser.add_argument("--label", action="append", default=[], help="host label KEY=VALUE (repeatable)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=_host)


def _host(args: argparse.Namespace) -> int:
    from waft.config import without_credentials
    from waft.host.host import Host, HostConfig
    from waft.logs import configure_logging

    configure_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        logging.getLogger("nats.aio.client").addFilter(_one_line_connection_errors)
    config = (HostConfig.from_env(nats_url=args.nats_url, prefix=args.lattice_prefix).with_stored_cluster_key()
              .with_stored_nats_credentials())
    config.labels.update(parse_pairs(args.label, "label"))

    async def main() -> None:
        host = Host(config)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, host.stop)
        task = asyncio.create_task(host.run())
        if not await joined(task, host.wait_ready(join_timeout_s()), without_credentials(config.nats_url)):
            return
        console.print(f"host {host.host_id} joined lattice {config.prefix!r} at {without_credentials(config.nats_url)}")
        await task

    asyncio.run(main())
    return 0


def _one_line_connection_errors(record: logging.LogRecord) -> bool:
    """nats-py logs each failed (re)connect with its traceback; one line naming the error says as much."""
    if record.exc_info and isinstance(record.exc_info[1], OSError | TimeoutError):
        record.msg, record.args = f"{record.getMessage()}: {record.exc_info[1]}", ()
        record.exc_info = record.exc_text = None
    return True
