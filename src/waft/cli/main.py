"""Entry point of `waft`: one parser, each command group registered by its own module.

A command group is a module under `waft.cli` with a `register(subparsers)` function that adds its
parser and sets `handler` (a callable taking the parsed namespace and returning an exit code). Keeping
the groups apart lets each part of the project own its commands without touching this file twice.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys
import traceback
from collections.abc import Sequence

from waft import __version__
from waft.cli.global_flags import (
    WaftParser,
    add_everywhere,
    add_global_flags,
    error_output,
    json_output,
    print_error,
    wants_json,
)
from waft.cli.output import CliError, console_err
from waft.errors import WaftError

#: Command groups, in the order `waft --help` lists them. A group whose module is missing is skipped,
#: so a partial checkout still has a working CLI.
GROUPS = ("up", "host", "ctl", "call", "app", "keys", "claims", "par", "reg", "bindle", "models", "bench", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = WaftParser(prog="waft", description="Waft: WebAssembly actors serving ML inference.")
    parser.add_argument("--version", action="version", version=f"waft {__version__}")
    add_global_flags(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        try:
            module = importlib.import_module(f"waft.cli.{group}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"waft.cli.{group}_cmd":
                raise
            continue
        module.register(subparsers)
    add_everywhere(parser)  # -o/--output and --verbose after any command too, as wash's global flags
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    WaftParser.json_errors = wants_json(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        with json_output(args):
            result = handler(args)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
        return int(result or 0)
    except WaftError as exc:  # refused on purpose: the message names the problem (and a CliError, the fix)
        if args.verbose:
            traceback.print_exc()
        _error(args, str(exc))
        return exc.exit_code if isinstance(exc, CliError) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, never a traceback unless asked
        if args.verbose:
            traceback.print_exc()
        _error(args, f"{type(exc).__name__}: {exc} (run with --verbose for details)")
        return 1


def _error(args: argparse.Namespace, message: str) -> None:
    """One line on stderr, or wash's `{"success": false, "error": …}` on stdout with `-o json`."""
    if error_output(args):
        print_error(message)
    else:
        console_err.print(f"[red]error:[/red] {message}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
