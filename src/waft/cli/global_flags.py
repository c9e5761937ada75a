"""Flags every command takes, wherever they are typed: `-o/--output json` and `--verbose`, as wash's are global.

wash accepts `wash -o json ctl get hosts` and `wash ctl get hosts -o json` alike, and in JSON mode it
answers every command with JSON, its errors as `{"success": false, "error": …}` on stdout. argparse
knows a flag only on the parser it was added to, so `add_everywhere` adds both to every command's
parser with a default of SUPPRESS: the top-level parser's default ("text", False) stands unless the
flag is given, before or after the subcommand. `json_output` then turns a command's human lines into
`{"success": true, "message": …}`, so scripts parse one shape whatever the command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

#: Commands that run until stopped and report as they go: their lines are never held back.
STREAMING = frozenset({"up", "host", "dashboard"})


def wants_json(argv: Sequence[str]) -> bool:
    """Whether `-o json` / `--output json` (or `=json`, `-ojson`) appears anywhere in `argv`."""
    words = list(argv)
    for i, word in enumerate(words):
        if word in ("-o", "--output") and i + 1 < len(words) and words[i + 1] == "json":
            return True
        if word in ("--output=json", "-ojson", "-o=json"):
            return True
    return False


class WaftParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are JSON in JSON mode (subcommand parsers inherit the class)."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if WaftParser.json_errors:
            print_error(f"{self.prog}: {message}")
            sys.exit(2)
        super().error(message)


def print_error(message: str) -> None:
    print(json.dumps({"success": False, "error": message}), flush=True)


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """The top-level parser's own: these defaults stand when a command's parser does not see the flag."""
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="output format, for every command (also accepted after the command)")


def add_everywhere(parser: argparse.ArgumentParser) -> None:
    """`-o/--output` and `--verbose` on every parser below `parser` that lacks them, defaulting to SUPPRESS."""
    seen: set[int] = set()

    def visit(p: argparse.ArgumentParser) -> None:
        if id(p) in seen:
            return
        seen.add(id(p))
        if "--output" not in p._option_string_actions and "-o" not in p._option_string_actions:
            p.add_argument("-o", "--output", choices=("text", "json"), default=argparse.SUPPRESS,
                           help="output format")
        if "--verbose" not in p._option_string_actions:
            p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="show tracebacks and debug logs")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    visit(child)

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                visit(child)


class _Capture(io.StringIO):
    """sys.stdout while a command runs in JSON mode: everything it prints, to be judged afterwards."""

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def json_output(args: argparse.Namespace) -> Iterator[None]:
    """In JSON mode, hold what the command prints; afterwards pass JSON through as it is and wrap anything
    else (tables, "actor … started") as `{"success": true, "message": …}`. Nothing is changed otherwise,
    nor for a command that streams (`up`, `host`, `dashboard`). On an error the held text is dropped:
    the caller prints the error as JSON instead."""
    if getattr(args, "output", "text") != "json" or getattr(args, "command", None) in STREAMING:
        yield
        return
    # The consoles write to whatever sys.stdout is at the time (they hold no file of their own): swapping
    # sys.stdout holds their output too, and restoring it leaves them pointing nowhere stale.
    held, real_stdout = _Capture(), sys.stdout
    sys.stdout = held
    try:
        yield
    finally:
        sys.stdout = real_stdout
    text = held.getvalue()
    if _is_json(text):
        real_stdout.write(text)
    else:
        print(json.dumps({"success": True, "message": text.strip()}), file=real_stdout)
    real_stdout.flush()


def _is_json(text: str) -> bool:
    if not text.strip():
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def error_output(args: Any) -> bool:
    """Whether an error of this command is to be printed as JSON."""
    return getattr(args, "output", "text") == "json"
