"""`waft host`: one more host on an existing lattice (scale-out)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from waft.cli.output import add_lattice_flags, console, parse_pairs


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
        await host.wait_ready(30)
        console.print(f"host {host.host_id} joined lattice {config.prefix!r} at {without_credentials(config.nats_url)}")
        await task

    asyncio.run(main())
    return 0
