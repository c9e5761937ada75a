"""`waft bench load URL --rate N --duration S --photos DIR`: open-loop load against any HTTP endpoint."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from waft.cli.output import CliError, add_output_flag, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="load generation and benchmarks")
    sub = bench.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    load = sub.add_parser("load", help="constant arrival rate load (open loop)")
    load.add_argument("url")
    load.add_argument("--rate", type=float, default=10.0, help="requests per second offered")
    load.add_argument("--duration", type=float, default=10.0, help="seconds")
    load.add_argument("--photos", type=Path, help="a directory of .jpg/.png (or one file) sent as bodies")
    load.add_argument("--method", default="PUT")
    load.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    load.add_argument("--find-max", type=float, metavar="P99_MS",
                      help="instead: find the highest rate whose p99 stays under P99_MS with no errors")
    add_output_flag(load)
    load.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    from waft.loadgen import find_max_rate, load_bodies, open_loop

    try:
        bodies = load_bodies(args.photos)
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if args.find_max:
        try:
            rate, result = asyncio.run(find_max_rate(args.url, bodies, p99_bound=args.find_max / 1000,
                                                     duration=args.duration))
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
        emit(args, {"max_rate": rate, **result.summary()}, title=f"max rate with p99 <= {args.find_max:g} ms")
        return 0
    if args.rate <= 0 or args.duration <= 0:
        raise CliError("--rate and --duration must be positive")
    result = asyncio.run(open_loop(args.url, args.rate, args.duration, bodies, method=args.method,
                                   timeout=args.timeout))
    emit(args, result.summary(), title=f"{args.method} {args.url} at {args.rate:g} req/s for {args.duration:g} s")
    return 0 if result.errors == 0 else 1
