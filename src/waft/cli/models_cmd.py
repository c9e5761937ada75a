"""`waft models list|add|fetch|push`: the model bindles Waft serves, and getting them into the bindle server.

Why `add` and `fetch` are strict: the zoo files are pinned by the original invoices (sha256 and size),
and a wrong file would only show up later as nonsense predictions or a provider load error. Checking
at the door gives a one-line error that names the file, the expected size and the expected digest.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from waft import models
from waft.bindle.client import BindleClient, BindleError
from waft.bindle.invoice import Invoice, InvoiceError
from waft.cli.output import CliError, add_output_flag, emit
from waft.config import setting

DEFAULT_BINDLE_URL = "http://127.0.0.1:8080/v1"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, import and push the model bindles")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = sub.add_parser("list", help="known models and where their files are")
    add_output_flag(ls)
    ls.set_defaults(handler=_list)

    add = sub.add_parser("add", help="import a local copy of a model-zoo file (checked by sha256 and size)")
    add.add_argument("name", help="route name, e.g. mobilenetv27")
    add.add_argument("file", type=Path)
    add_output_flag(add)
    add.set_defaults(handler=_add)

    fetch = sub.add_parser("fetch", help="download a model-zoo file (needs network) and import it")
    fetch.add_argument("name")
    fetch.add_argument("--url", help="download from here instead of the ONNX model zoo")
    fetch.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole download")
    add_output_flag(fetch)
    fetch.set_defaults(handler=_fetch)

    push = sub.add_parser("push", help="push model bindles (invoice, then parcels) to a bindle server")
    push.add_argument("routes", nargs="*", help="routes to push (default: every built or imported one)")
    push.add_argument("--bindle-url", default=None,
                      help=f"bindle server (default: $BINDLE_URL, $WAFT_BINDLE_URL, {DEFAULT_BINDLE_URL})")
    add_output_flag(push)
    push.set_defaults(handler=_push)


# --- list ------------------------------------------------------------------------------------------

def _list(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for route, entry in models.REGISTRY.items():
        directory = models.find_local(route)
        rows.append({"route": route, "bindle_id": entry.bindle_id, "encoding": entry.graph_encoding,
                     "source": entry.source, "labels": entry.labels or "", "status": _status(entry, directory),
                     "path": str(directory) if directory else ""})
    emit(args, rows, columns=["route", "bindle_id", "encoding", "status", "path"], rows=rows,
         title="models (not built: `make models`; missing: `waft models fetch NAME` or `add NAME FILE`)")
    return 0


def _status(entry: models.ModelEntry, directory: Path | None) -> str:
    if directory is not None:
        return "imported" if directory.parent == models.user_dir() else "built"
    return "not built" if entry.source == "built" else "missing"


# --- add / fetch -----------------------------------------------------------------------------------

def _entry(name: str) -> models.ModelEntry:
    try:
        return models.get(name)
    except KeyError as exc:
        raise CliError(str(exc.args[0])) from None


def _add(args: argparse.Namespace) -> int:
    entry = _entry(args.name)
    path: Path = args.file
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    emit(args, install(entry, path))
    return 0


def install(entry: models.ModelEntry, path: Path) -> dict[str, Any]:
    """Verify `path`, copy it into `$WAFT_HOME/models/<route>/` and write metadata, labels and invoice."""
    if entry.sha256 is None:
        raise CliError(f"{entry.route} is built from source by `make models`; there is no file to add")
    try:
        sha = models.verify_file(path, entry)
    except models.ModelFileMismatch as exc:
        raise CliError(f"refusing {path}: {exc}") from None
    directory = models.user_dir() / entry.route
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / entry.model_file
    if path.resolve() != target.resolve():
        part = directory / f".{entry.model_file}.part"
        shutil.copyfile(path, part)
        part.replace(target)
    input_name, output_name = _tensor_names(entry, target)
    models.write_model_dir(entry, directory, input_name=input_name, output_name=output_name)
    return {"route": entry.route, "bindle_id": entry.bindle_id, "sha256": sha, "path": str(directory)}


def _tensor_names(entry: models.ModelEntry, path: Path) -> tuple[str | None, str | None]:
    """The graph's real first input and output names (the zoo files name them differently)."""
    if entry.graph_encoding != "onnx":
        return entry.input_name, entry.output_name
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    return (inputs[0] if inputs else None), (graph.output[0].name if graph.output else None)


async def _fetch(args: argparse.Namespace) -> int:
    entry = _entry(args.name)
    urls = [args.url] if args.url else list(entry.urls)
    if not urls:
        raise CliError(f"{entry.route} has no download URL; it is built by `make models`")
    directory = models.user_dir() / entry.route
    directory.mkdir(parents=True, exist_ok=True)
    part = directory / f".{entry.model_file}.download"
    errors: list[str] = []
    try:
        for url in urls:
            try:
                await _download(url, part, args.timeout)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{url}: {type(exc).__name__}: {exc}".rstrip(": "))
                continue
            emit(args, install(entry, part))
            return 0
    finally:
        part.unlink(missing_ok=True)
    raise CliError(f"cannot download {entry.model_file} ({'; '.join(errors)}); on a machine without network, "
                   f"copy the file here and run `waft models add {entry.route} FILE`")


async def _download(url: str, target: Path, timeout: float) -> None:
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 15.0))
    async with aiohttp.ClientSession(timeout=client_timeout) as session, session.get(url) as resp:
        if resp.status != 200:
            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status, message=resp.reason or "")
        with target.open("wb") as f:
            async for chunk in resp.content.iter_chunked(1 << 20):
                f.write(chunk)


# --- push ------------------------------------------------------------------------------------------

def bindle_base(url: str | None) -> str:
    """Bindle URLs are conventionally given with the `/v1` API prefix; accept them with or without it."""
    raw = (url or setting("bindle_url", "") or os.environ.get("BINDLE_URL") or DEFAULT_BINDLE_URL).rstrip("/")
    return raw if raw.endswith("/v1") else f"{raw}/v1"


async def _push(args: argparse.Namespace) -> int:
    local = dict(models.local_models())
    routes = args.routes or list(local)
    missing = [r for r in routes if r not in local]
    if missing:
        raise CliError(f"no built or imported copy of {', '.join(missing)}; run `make models` or "
                       "`waft models add NAME FILE` first")
    if not routes:
        raise CliError("nothing to push: run `make models` first")
    base = bindle_base(args.bindle_url)
    results = []
    async with BindleClient(base) as client:
        for route in routes:
            try:
                results.append(await push_model(client, local[route]))
            except (BindleError, InvoiceError) as exc:
                raise CliError(f"bindle server {base}: pushing {route}: {exc}") from None
    emit(args, results, columns=["route", "bindle_id", "invoice", "uploaded", "present"], rows=results,
         title=base)
    return 0


async def push_model(client: BindleClient, directory: Path) -> dict[str, Any]:
    """Create the invoice (or reuse it) and upload the parcels the server lacks; a re-push is a no-op."""
    invoice = Invoice.from_toml((directory / models.INVOICE_FILE).read_text())
    files = {p.label.sha256: directory / p.label.name for p in invoice.parcels or []}
    result = await client.push(invoice, files)
    if result.missing:
        names = ", ".join(label.name for label in result.missing)
        raise CliError(f"{directory}: the server still lacks {names}")
    return {"route": directory.name, "bindle_id": str(invoice.id),
            "invoice": "created" if result.created else "exists",
            "uploaded": len(result.uploaded), "present": len(files) - len(result.uploaded)}
