"""`waft models list|add|fetch|push`: the model bindles Waft serves, and getting them into the bindle server.

The work is the library's (`waft.models`, `waft.models.store`), which `waft up --push-models` shares; this
module is the argument parsing and the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from waft import models
from waft.cli.output import CliError, add_output_flag, emit
from waft.models.store import DEFAULT_BINDLE_URL, add_local, bindle_base, fetch, push_local, push_model

__all__ = ["push_model", "register"]  # push_model: older callers imported it from here


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, import and push the model bindles")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="known models and where their files are")
    _models_dir_flag(ls)
    add_output_flag(ls)
    ls.set_defaults(handler=_list)

    add = sub.add_parser("add", help="add any local ONNX, TensorFlow-1 (.pb) or TF Lite file as a model bindle "
                                     "(a model-zoo name: its pinned file, checked by sha256 and size)")
    add.add_argument("name", help="route name, e.g. digits or mobilenetv27")
    add.add_argument("file", type=Path)
    add.add_argument("--labels", type=Path, default=None, help="labels file, one class per line (default: indices)")
    add.add_argument("--spec", default=None,
                     help="input spec as JSON text or a JSON file (default: derived from the model's input)")
    add.add_argument("--push", action="store_true", help="push the bindle to the bindle server afterwards")
    add.add_argument("--bindle-url", default=None,
                     help=f"bindle server for --push (default: $WAFT_BINDLE_URL, $BINDLE_URL, {DEFAULT_BINDLE_URL})")
    add_output_flag(add)
    add.set_defaults(handler=_add)

    fetch_cmd = sub.add_parser("fetch", help="download a model-zoo file (needs network) and import it")
    fetch_cmd.add_argument("name")
    fetch_cmd.add_argument("--url", help="download from here instead of the ONNX model zoo")
    fetch_cmd.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole download")
    add_output_flag(fetch_cmd)
    fetch_cmd.set_defaults(handler=_fetch)

    push = sub.add_parser("push", help="push model bindles (invoice, then parcels) to a bindle server")
    push.add_argument("routes", nargs="*", help="routes to push (default: every built or imported one)")
    push.add_argument("--bindle-url", default=None,
                      help=f"bindle server (default: $WAFT_BINDLE_URL, $BINDLE_URL, {DEFAULT_BINDLE_URL})")
    _models_dir_flag(push)
    add_output_flag(push)
    push.set_defaults(handler=_push)


def _models_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="where the built models are (default: $WAFT_MODELS_DIR, else $WAFT_HOME/models)")


# --- list ------------------------------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for route, entry in models.REGISTRY.items():
        status, directory = models.local_status(entry, args.models_dir)
        rows.append({"route": route, "bindle_id": entry.bindle_id, "encoding": entry.graph_encoding,
                     "source": entry.source, "labels": entry.labels or "", "status": status,
                     "path": str(directory) if directory else ""})
    emit(args, rows, columns=["route", "bindle_id", "encoding", "status", "path"], rows=rows,
         title=f"models in {models.build_dir(args.models_dir)} (not built: `make models`; missing: "
               "`waft models fetch NAME` or `add NAME FILE`)")
    return 0


# --- add / fetch -----------------------------------------------------------------------------------

def _spec_argument(raw: str | None) -> dict[str, Any] | None:
    """--spec as JSON text, or the path of a JSON file."""
    if raw is None:
        return None
    text = raw if raw.lstrip().startswith("{") else Path(raw).read_text()
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--spec is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise CliError("--spec must be a JSON object")
    return spec


async def _add(args: argparse.Namespace) -> int:
    spec = _spec_argument(args.spec)
    result = add_local(args.name, args.file, labels=args.labels, spec=spec)
    if args.push:
        result |= {"pushed": await push_local(args.bindle_url, [args.name], progress=_on_a_terminal())}
    emit(args, result)
    return 0


async def _fetch(args: argparse.Namespace) -> int:
    entry = models.get(args.name)
    emit(args, await fetch(entry, [args.url] if args.url else [], timeout=args.timeout, progress=_on_a_terminal()))
    return 0


def _on_a_terminal() -> bool:
    """Progress bars go to stderr, and only when a person watches it: a script or a log gets none."""
    return sys.stderr.isatty()


# --- push ------------------------------------------------------------------------------------------

async def _push(args: argparse.Namespace) -> int:
    results = await push_local(args.bindle_url, args.routes, models_dir=args.models_dir, progress=_on_a_terminal())
    if not results:
        raise CliError(f"nothing to push from {models.build_dir(args.models_dir)}: run `make models` first, or "
                       "point --models-dir ($WAFT_MODELS_DIR) at the built models")
    emit(args, results, columns=["route", "bindle_id", "invoice", "uploaded", "present"], rows=results,
         title=bindle_base(args.bindle_url))
    return 0
