"""How commands speak: aligned tables or JSON on stdout, one-line errors on stderr."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from waft.config import setting
from waft.errors import WaftError

# Piped output is read by programs and people with wide windows: don't squeeze tables into 80 columns.
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
console = Console(highlight=False, soft_wrap=True, width=_WIDTH)
console_err = Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(WaftError):
    """A failure the user can act on: the message names the problem and the fix."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    """`-o/--output` here too; SUPPRESS keeps a `waft -o json CMD` given before the command (main's default)."""
    parser.add_argument("-o", "--output", choices=("text", "json"), default=argparse.SUPPRESS, help="output format")


def emit(args: argparse.Namespace, data: Any, *, columns: Sequence[str] | None = None,
         rows: Iterable[Mapping[str, Any]] | None = None, title: str | None = None) -> None:
    """Print `data` as JSON when `-o json`, else as a table of `rows` (or a key/value table)."""
    if getattr(args, "output", "text") == "json":
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    if rows is not None and columns is not None:
        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        console.print(table)
    elif isinstance(data, Mapping):
        table = Table(title=title, show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value")
        for key, value in data.items():
            table.add_row(str(key), _cell(value))
        console.print(table)
    else:
        console.print(str(data))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def add_prefix_flag(parser: argparse.ArgumentParser) -> None:
    """`-x`: the flag, else `WAFT_LATTICE_PREFIX`, else wasmCloud's `WASMCLOUD_LATTICE_PREFIX`, else `default`."""
    parser.add_argument("-x", "--lattice-prefix",
                        default=setting("lattice_prefix", "default", wasmcloud="lattice_prefix"))


def default_nats_url() -> str:
    """`WAFT_NATS_URL`, else wash's `WASMCLOUD_CTL_HOST` and `WASMCLOUD_CTL_PORT` (either alone: the other
    is wash's default), else 127.0.0.1:4222: a shell set up for wash reaches the same lattice."""
    url = setting("nats_url")
    if url:
        return url
    host, port = setting("ctl_host", wasmcloud="ctl_host"), setting("ctl_port", wasmcloud="ctl_port")
    if not host and not port:
        return DEFAULT_NATS_URL
    host = host or "127.0.0.1"
    return host if "://" in host else f"nats://{host}:{port or 4222}"


#: How long `waft host` and `waft dashboard` wait to be on the lattice before saying they cannot reach it.
DEFAULT_JOIN_TIMEOUT_MS = 30_000


def join_timeout_s() -> float:
    """`WAFT_JOIN_TIMEOUT_MS`, else 30 s: NATS clients retry an unreachable server forever, so without a bound
    a mistyped URL waits in silence."""
    raw = setting("join_timeout_ms", str(DEFAULT_JOIN_TIMEOUT_MS)) or ""
    if not raw.isdigit() or int(raw) <= 0:
        raise CliError(f"WAFT_JOIN_TIMEOUT_MS must be a positive whole number of milliseconds, got {raw!r}")
    return int(raw) / 1000


def not_joined(nats_url: str) -> CliError:
    return CliError(f"not on the lattice at {nats_url} after {join_timeout_s():g} s: cannot reach NATS there? "
                    "(is the lattice up? `waft up`; WAFT_JOIN_TIMEOUT_MS waits longer)")


def add_lattice_flags(parser: argparse.ArgumentParser) -> None:
    """Which NATS and which lattice on it, for every command that joins one."""
    parser.add_argument("--nats-url", default=default_nats_url(),
                        help="NATS server; members of one cluster comma-separated (any that is up is used)")
    add_prefix_flag(parser)


def _milliseconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of milliseconds "
                                         "(from the flag, WAFT_CTL_TIMEOUT_MS or WASMCLOUD_CTL_TIMEOUT_MS)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the timeout must be positive")
    return value


def add_connection_flags(parser: argparse.ArgumentParser, *, timeout_ms: int = 2000) -> None:
    """How a command reaches the lattice: the same three flags on every command that talks to it.

    The timeout's default is the command's own unless `WASMCLOUD_CTL_TIMEOUT_MS` (wash's) says otherwise;
    given as a string, argparse checks it as it checks the flag, so a bad variable is a usage error."""
    add_lattice_flags(parser)
    parser.add_argument("-t", "--timeout-ms", type=_milliseconds,
                        default=setting("ctl_timeout_ms", str(timeout_ms), wasmcloud="ctl_timeout_ms"))


def parse_pairs(pairs: Iterable[str], what: str) -> dict[str, str]:
    """`KEY=VALUE` arguments (link values, labels) as a dict; a malformed one is a CliError naming it."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {pair!r} must look like KEY=VALUE")
        result[key] = value
    return result
