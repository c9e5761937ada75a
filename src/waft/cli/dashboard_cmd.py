"""`waft dashboard`: the lattice dashboard on its own, against any NATS server of a lattice."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from waft.cli.output import CliError, add_lattice_flags, console, join_timeout_s, not_joined
from waft.config import setting, without_credentials
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
        ready: asyncio.Future[str] = loop.create_future()

        def on_ready(url: str) -> None:
            console.print(f"dashboard: {url}", highlight=False)
            ready.set_result(url)

        serving = asyncio.create_task(serve_dashboard(args.nats_url, args.lattice_prefix, host, port,
                                                      bindle_url=args.bindle_url, stop=stop, on_ready=on_ready))
        # Until it is on the lattice the dashboard retries NATS forever and does not look at `stop`: a signal
        # or the join timeout ends that wait here.
        stopped = asyncio.ensure_future(stop.wait())
        in_time = asyncio.ensure_future(asyncio.wait_for(asyncio.shield(ready), join_timeout_s()))
        try:
            done, _ = await asyncio.wait({serving, stopped, in_time}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            in_time.cancel()
        if serving in done:
            serving.result()  # ended before it was ready: raises why
            return
        if in_time in done and not in_time.cancelled() and in_time.exception() is None:
            await serving  # on the lattice: it serves until `stop`
            return
        serving.cancel()  # a signal, or no NATS within the join timeout
        await asyncio.gather(serving, return_exceptions=True)
        if not stop.is_set():
            raise not_joined(without_credentials(args.nats_url))

    try:
        asyncio.run(main())
    except CtlError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot serve the dashboard on {args.address}: {exc.strerror or exc}") from None
    return 0
