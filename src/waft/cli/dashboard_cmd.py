"""`waft dashboard`: the lattice dashboard on its own, against any NATS server of a lattice."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from waft.cli.output import CliError, add_lattice_flags, console
from waft.config import setting
from waft.ctl import CtlError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dashboard", help="serve the lattice dashboard (web UI and /metrics)")
    add_lattice_flags(parser)
    parser.add_argument("--address", default=setting("dashboard_address", "127.0.0.1:4000"),
                        help="HOST:PORT to bind (default 127.0.0.1:4000); any non-loopback address requires a "
                             "token ($WAFT_DASHBOARD_TOKEN, or one is generated and printed)")
    parser.add_argument("--bindle-url", default=None, help="model repository (default: $BINDLE_URL)")
    parser.set_defaults(handler=_run)


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CliError(f"--address must be HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _run(args: argparse.Namespace) -> int:
    from waft.dashboard.server import serve_dashboard

    host, port = _split(args.address)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        await serve_dashboard(args.nats_url, args.lattice_prefix, host, port, bindle_url=args.bindle_url,
                              stop=stop, on_ready=lambda url: console.print(f"dashboard: {url}", highlight=False))

    try:
        asyncio.run(main())
    except CtlError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot serve the dashboard on {args.address}: {exc.strerror or exc}") from None
    return 0
