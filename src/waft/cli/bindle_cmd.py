"""`waft bindle ...`: the model repository from the command line, shaped like v0.7.1's `bindle` CLI
(push, push-invoice, push-file, get, get-invoice, get-parcel, search, yank, info) plus `serve`.

Differences from the Rust CLI: `-o` is the output *format* everywhere (Waft's convention), so the
destination file of get-invoice/get-parcel is `-O/--out`; credentials come from `--http-user`/
`--http-password` or `BINDLE_HTTP_USER`/`BINDLE_HTTP_PASSWORD` (v0.7.1 had those env names swapped).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from waft.bindle import serve, standalone
from waft.bindle.auth import local_credentials_for
from waft.bindle.client import (
    BindleClient,
    BindleError,
    InvoiceAlreadyExists,
    InvoiceNotFound,
    ParcelAlreadyExists,
    ParcelNotFound,
    Unauthorized,
    default_url,
)
from waft.bindle.ids import BindleId, InvalidId
from waft.bindle.invoice import Invoice, InvoiceError, Label
from waft.cli.output import CliError, add_output_flag, console, emit
from waft.config import setting


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bindle", help="push, fetch and serve models in the bindle repository")
    _add_connection_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="bindle_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_flags(common, suppress=True)

    def leaf(name: str, help_text: str, handler: Callable[..., Any], *, output: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, parents=[common])
        if output:
            add_output_flag(p)
        p.set_defaults(handler=handler)
        return p

    p = leaf("push", "push a standalone bindle (invoice and parcels) from a directory", _push)
    p.add_argument("bindle", help="NAME/VERSION")
    p.add_argument("-p", "--path", type=Path, default=Path("."),
                   help="directory holding <sha256 of id>/invoice.toml and parcels/<sha>.dat (default .)")

    p = leaf("push-invoice", "create an invoice from a TOML file", _push_invoice)
    p.add_argument("file", type=Path, nargs="?", default=Path("invoice.toml"))

    p = leaf("push-file", "upload one parcel listed in an existing invoice", _push_file)
    p.add_argument("bindle", help="NAME/VERSION")
    p.add_argument("file", type=Path)
    p.add_argument("-n", "--name", help="label name, only for messages (default: file name)")
    p.add_argument("-m", "--media-type", help="accepted for compatibility; the invoice's label decides")

    p = leaf("get", "fetch an invoice and all its parcels into the local cache", _get)
    p.add_argument("bindle")
    p.add_argument("-y", "--yanked", action="store_true", help="also fetch a yanked bindle")
    p.add_argument("-e", "--export", type=Path, help="also write a standalone copy under this directory")

    p = leaf("get-invoice", "save an invoice as TOML", _get_invoice)
    p.add_argument("bindle")
    p.add_argument("-O", "--out", default="invoice.toml", help="file to create, or - for stdout (default invoice.toml)")
    p.add_argument("-y", "--yanked", action="store_true", help="also fetch a yanked bindle")

    p = leaf("get-parcel", "save one parcel", _get_parcel)
    p.add_argument("bindle")
    p.add_argument("sha", help="the parcel's sha256")
    p.add_argument("-O", "--out", default="parcel.dat", help="file to create, or - for stdout (default parcel.dat)")

    p = leaf("search", "search invoices by name and version range", _search)
    p.add_argument("-q", "--query", default="", help="substring of the bindle name")
    p.add_argument("-b", "--version", dest="version_req", help="exact version or range, e.g. ^1.2")
    p.add_argument("--offset", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--strict", action="store_true")
    p.add_argument("--yanked", action="store_true", help="include yanked bindles")

    p = leaf("yank", "mark a bindle yanked (it stays stored, but is no longer served)", _yank)
    p.add_argument("bindle")

    p = leaf("info", "show an invoice (TOML, or JSON with -o json)", _info)
    p.add_argument("bindle")
    p.add_argument("-y", "--yanked", action="store_true", help="also show a yanked bindle")

    p = sub.add_parser("serve", help="run the bindle server (python -m waft.bindle takes the same options)")
    serve.add_arguments(p)
    p.set_defaults(handler=_serve)


def _add_connection_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("-s", "--server", default=default(None),
                        help=f"server URL incl. /v1/ (env BINDLE_URL, default {default_url()})")
    parser.add_argument("--http-user", default=default(None), help="basic-auth user (env BINDLE_HTTP_USER)")
    parser.add_argument("--http-password", default=default(None),
                        help="basic-auth password (env BINDLE_HTTP_PASSWORD)")
    parser.add_argument("--cache-dir", type=Path, default=default(None),
                        help="parcel cache (default $WAFT_HOME/cache/parcels)")


def _client(args: argparse.Namespace, *, progress: bool = True) -> BindleClient:
    user = setting("bindle_http_user", flag=args.http_user or None, also=("BINDLE_HTTP_USER",))
    password = setting("bindle_http_password", flag=args.http_password or None, also=("BINDLE_HTTP_PASSWORD",))
    if bool(user) != bool(password):
        raise CliError("basic auth needs both --http-user and --http-password (or BINDLE_HTTP_USER/PASSWORD)")
    url = args.server or default_url()
    # no credentials given: a loopback server `waft up` started takes the ones it stored
    return BindleClient(url, auth=(user, password) if user and password else None,
                        write_auth=local_credentials_for(url),
                        cache_dir=args.cache_dir, progress=progress and sys.stderr.isatty())


async def _call(args: argparse.Namespace, work: Callable[[BindleClient], Awaitable[int]]) -> int:
    """Run `work` with a client, turning library errors into one-line CLI errors with a fix."""
    try:
        async with _client(args) as client:
            return await work(client)
    except InvoiceNotFound as exc:
        raise CliError(f"{exc} (check the NAME/VERSION with `waft bindle search`; use -y for yanked bindles)") from None
    except ParcelNotFound as exc:
        raise CliError(f"{exc} (the invoice lists it but it was never uploaded: `waft bindle push-file`)") from None
    except Unauthorized as exc:
        raise CliError(str(exc)) from None
    except BindleError as exc:
        raise CliError(str(exc)) from None
    except (InvalidId, InvoiceError) as exc:
        raise CliError(f"{exc}") from None


def _bid(text: str) -> BindleId:
    try:
        return BindleId.parse(text)
    except InvalidId as exc:
        raise CliError(f"{exc} (e.g. identity_model/0.2.0)") from None


def _label_row(label: Label) -> dict[str, Any]:
    return {"name": label.name, "sha256": label.sha256, "size": label.size, "mediaType": label.media_type}


# ------------------------------------------------------------------------------------------ handlers

async def _push(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)
    try:
        invoice, files = standalone.read(args.path, bid)
    except (FileNotFoundError, InvoiceError, InvalidId) as exc:
        raise CliError(f"{exc}") from None

    async def work(client: BindleClient) -> int:
        result = await client.push(invoice, files)
        emit(args, {"id": str(bid), "created": result.created, "uploaded": result.uploaded,
                    "missing": [m.sha256 for m in result.missing]})
        return 0

    return await _call(args, work)


async def _push_invoice(args: argparse.Namespace) -> int:
    try:
        invoice = Invoice.from_toml(args.file.read_bytes())
    except FileNotFoundError:
        raise CliError(f"no invoice file {args.file} (pass its path)") from None
    except InvoiceError as exc:
        raise CliError(f"{args.file}: {exc}") from None

    async def work(client: BindleClient) -> int:
        try:
            stored, missing = await client.create_invoice(invoice)
        except InvoiceAlreadyExists:
            raise CliError(f"bindle {invoice.id} already exists (invoices are immutable: bump the version)") from None
        rows = [_label_row(label) for label in missing]
        if args.output == "json":
            emit(args, {"id": str(stored.id), "missing": rows})
        else:
            console.print(f"Invoice {stored.id} created; {len(missing)} parcel(s) still to upload")
            if rows:
                emit(args, rows, columns=["name", "sha256", "size", "mediaType"], rows=rows)
        return 0

    return await _call(args, work)


async def _push_file(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)
    if not args.file.is_file():
        raise CliError(f"no file {args.file} (pass the parcel's path)")
    sha = _sha256_file(args.file)

    async def work(client: BindleClient) -> int:
        try:
            await client.upload_parcel(bid, sha, args.file)
            status = "uploaded"
        except ParcelAlreadyExists:
            status = "already stored"
        emit(args, {"id": str(bid), "name": args.name or args.file.name, "sha256": sha, "status": status})
        return 0

    return await _call(args, work)


async def _get(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)

    async def work(client: BindleClient) -> int:
        invoice = await client.get_invoice(bid, yanked=args.yanked)
        paths = {p.label.sha256: await client.get_parcel(bid, p.label.sha256) for p in invoice.parcels}
        data: dict[str, Any] = {"id": str(bid), "parcels": {sha: str(path) for sha, path in paths.items()}}
        if args.export:
            data["exported"] = str(standalone.write(args.export, invoice, paths))
        rows = [{**_label_row(p.label), "path": str(paths[p.label.sha256])} for p in invoice.parcels]
        if args.output == "json":
            emit(args, data)
        else:
            emit(args, rows, columns=["name", "sha256", "size", "path"], rows=rows, title=str(bid))
            if args.export:
                console.print(f"Exported to {data['exported']}")
        return 0

    return await _call(args, work)


async def _get_invoice(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)

    async def work(client: BindleClient) -> int:
        invoice = await client.get_invoice(bid, yanked=args.yanked)
        if args.out == "-":
            sys.stdout.write(invoice.to_toml())
            return 0
        _write_new(Path(args.out), invoice.to_toml().encode("utf-8"))
        emit(args, {"id": str(bid), "path": args.out})
        return 0

    return await _call(args, work)


async def _get_parcel(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)

    async def work(client: BindleClient) -> int:
        path = await client.get_parcel(bid, args.sha)
        if args.out == "-":
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            return 0
        _write_new(Path(args.out), None, source=path)
        emit(args, {"id": str(bid), "sha256": args.sha, "path": args.out})
        return 0

    return await _call(args, work)


async def _search(args: argparse.Namespace) -> int:
    async def work(client: BindleClient) -> int:
        found = await client.search(args.query, version=args.version_req, offset=args.offset, limit=args.limit,
                                    strict=args.strict or None, yanked=args.yanked or None)
        if args.output == "json":
            emit(args, found.to_dict())
            return 0
        if found.total == 0:
            console.print("No matching bindles were found")
            return 0
        rows = [{"id": str(i.id), "description": i.description or "", "yanked": "yes" if i.yanked else ""}
                for i in found.invoices]
        emit(args, rows, columns=["id", "description", "yanked"], rows=rows)
        first = found.offset + 1 if found.invoices else found.offset
        console.print(f"=== Showing results {first} to {found.offset + len(found.invoices)} of {found.total} "
                      f"(limit: {found.limit})")
        return 0

    return await _call(args, work)


async def _yank(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)

    async def work(client: BindleClient) -> int:
        await client.yank(bid)
        emit(args, {"id": str(bid), "yanked": True})
        return 0

    return await _call(args, work)


async def _info(args: argparse.Namespace) -> int:
    bid = _bid(args.bindle)

    async def work(client: BindleClient) -> int:
        invoice = await client.get_invoice(bid, yanked=args.yanked)
        if args.output == "json":
            emit(args, invoice.to_dict())
        else:
            sys.stdout.write(invoice.to_toml())
        return 0

    return await _call(args, work)


async def _serve(args: argparse.Namespace) -> int:
    try:
        return await serve.run(args)
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot start the bindle server: {exc}") from None


# ------------------------------------------------------------------------------------------- helpers

def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _write_new(dest: Path, data: bytes | None, *, source: Path | None = None) -> None:
    """Create `dest` (never overwrite, as v0.7.1's create_new), from bytes or by copying `source`."""
    try:
        fh = dest.open("xb")
    except FileExistsError:
        raise CliError(f"{dest} already exists (remove it or pass -O another path)") from None
    with fh:
        if data is not None:
            fh.write(data)
        elif source is not None:
            with source.open("rb") as src:
                while chunk := src.read(1 << 20):
                    fh.write(chunk)
