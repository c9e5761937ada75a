"""Server settings from flags, then `WAFT_BINDLE_*`, then v0.7.1's `BINDLE_*` names, then defaults;
shared by `python -m waft.bindle` and `waft bindle serve` so both take the same options.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from waft.bindle.server import (
    DEFAULT_MAX_INVOICE_SIZE,
    DEFAULT_MAX_PARCEL_SIZE,
    DEFAULT_UPLOAD_IDLE_TIMEOUT,
    ServerConfig,
    serve,
)
from waft.config import setting, waft_home


def _env(waft_name: str, *bindle_names: str) -> str | None:
    """`WAFT_BINDLE_…`, else bindle's own variable: a bindle user's environment keeps working."""
    return setting(waft_name.removeprefix("WAFT_").lower(), also=bindle_names)


def _size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024), so limits are easy to type."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in units else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 4194304, 4M or 8G)")
    return int(digits) * factor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--address", default=_env("WAFT_BINDLE_ADDRESS", "BINDLE_IP_ADDRESS_PORT")
                        or "127.0.0.1:8080", help="HOST:PORT to listen on (port 0 picks a free one)")
    parser.add_argument("-d", "--directory", type=Path,
                        default=_env("WAFT_BINDLE_DIRECTORY", "BINDLE_DIRECTORY"),
                        help="storage root (default $WAFT_HOME/bindle)")
    parser.add_argument("--htpasswd-file", type=Path, default=_env("WAFT_BINDLE_HTPASSWD_FILE", "BINDLE_HTPASSWD_FILE"),
                        help="bcrypt htpasswd file: enables HTTP basic auth (GET stays anonymous)")
    parser.add_argument("--signing-keys", type=Path, default=_env("WAFT_BINDLE_SIGNING_KEYS", "BINDLE_SIGNING_KEYS"),
                        help="host signing keys (default DIRECTORY/signing-keys.toml, created if absent)")
    parser.add_argument("-r", "--keyring", type=Path, default=_env("WAFT_BINDLE_KEYRING", "BINDLE_KEYRING"),
                        help="trusted public keys (default DIRECTORY/keyring.toml; absent means empty)")
    parser.add_argument("--strategy", default=_env("WAFT_BINDLE_VERIFICATION_STRATEGY",
                                                   "BINDLE_VERIFICATION_STRATEGY") or "GreedyVerification",
                        help="signature verification strategy (v0.7.1 names)")
    parser.add_argument("--max-invoice-size", type=_size,
                        default=_size(_env("WAFT_BINDLE_MAX_INVOICE_SIZE") or str(DEFAULT_MAX_INVOICE_SIZE)),
                        help="largest invoice body accepted, bytes (413 above)")
    parser.add_argument("--max-parcel-size", type=_size,
                        default=_size(_env("WAFT_BINDLE_MAX_PARCEL_SIZE") or str(DEFAULT_MAX_PARCEL_SIZE)),
                        help="largest parcel body accepted, bytes (413 above)")
    parser.add_argument("--upload-idle-timeout", type=float,
                        default=float(_env("WAFT_BINDLE_UPLOAD_IDLE_TIMEOUT") or DEFAULT_UPLOAD_IDLE_TIMEOUT),
                        help="seconds an upload may stall before it is dropped (408)")


def config_from_args(args: argparse.Namespace) -> tuple[ServerConfig, str, int]:
    host, sep, port = args.address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--address must be HOST:PORT, got {args.address!r}")
    directory = args.directory or waft_home() / "bindle"
    config = ServerConfig(directory=Path(directory), signing_keys=args.signing_keys, keyring=args.keyring,
                          strategy=args.strategy, htpasswd_file=args.htpasswd_file,
                          max_invoice_size=args.max_invoice_size, max_parcel_size=args.max_parcel_size,
                          upload_idle_timeout=args.upload_idle_timeout)
    return config, host.strip("[]") or "127.0.0.1", int(port)


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; prints one `listening on URL` line (tests read the port from it)."""
    config, host, port = config_from_args(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready(url: str) -> None:
        print(f"bindle server listening on {url} (storage {config.directory})", flush=True)

    await serve(config, host, port, on_ready=ready, stop=stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m waft.bindle",
                                     description="bindle v0.7.1-compatible model repository server")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130
