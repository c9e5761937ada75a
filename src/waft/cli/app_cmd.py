"""`waft app deploy|undeploy|list|status`: wadm-like declarative applications."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from waft.app import Manifest, ManifestError, reconcile, status, undeploy
from waft.app_store import AppStore
from waft.cli.output import CliError, add_connection_flags, add_output_flag, console, emit
from waft.ctl import CtlClient, CtlError


def register(subparsers: argparse._SubParsersAction) -> None:
    app = subparsers.add_parser("app", help="deploy applications from a manifest")
    sub = app.add_subparsers(dest="app_command", metavar="ACTION", required=True)
    for name, handler, help_text in (("deploy", _deploy, "reconcile the lattice to a manifest"),
                                     ("undeploy", _undeploy, "remove what a manifest deployed"),
                                     ("status", _status, "desired vs running, per component")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("manifest", type=Path)
        if name == "deploy":
            p.add_argument("--host-id", help="start what is missing on this host (default: the first to answer)")
        add_connection_flags(p, timeout_ms=5000)
        add_output_flag(p)
        p.set_defaults(handler=_wrap(handler))
    ls = sub.add_parser("list", help="applications deployed on this lattice")
    add_connection_flags(ls, timeout_ms=5000)
    add_output_flag(ls)
    ls.set_defaults(handler=_wrap(_list))


def _wrap(handler):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with CtlClient.connect(args.nats_url, args.lattice_prefix, args.timeout_ms / 1000) as ctl:
                return await handler(ctl, args)

        try:
            return asyncio.run(main())
        except (CtlError, ManifestError) as exc:
            raise CliError(str(exc)) from None

    return run


async def _deploy(ctl: CtlClient, args: argparse.Namespace) -> int:
    manifest = Manifest.load(args.manifest)
    done = await reconcile(ctl, manifest, host_id=args.host_id)
    store = await AppStore.open(ctl.nc, ctl.prefix)
    await store.put(manifest.name, {"name": manifest.name, "version": manifest.version,
                                    "source": str(args.manifest.resolve())})
    if args.output == "json":
        emit(args, {"app": manifest.name, "actions": done})
    else:
        for line in done or ["already in the declared state"]:
            console.print(f"{manifest.name}: {line}")
    return 0


async def _undeploy(ctl: CtlClient, args: argparse.Namespace) -> int:
    manifest = Manifest.load(args.manifest)
    done = await undeploy(ctl, manifest)
    await (await AppStore.open(ctl.nc, ctl.prefix)).delete(manifest.name)
    if args.output == "json":
        emit(args, {"app": manifest.name, "actions": done})
    else:
        for line in done or ["nothing was running"]:
            console.print(f"{manifest.name}: {line}")
    return 0


async def _status(ctl: CtlClient, args: argparse.Namespace) -> int:
    manifest = Manifest.load(args.manifest)
    rows = await status(ctl, manifest)
    emit(args, rows, columns=["kind", "name", "desired", "running", "ok"], rows=rows, title=manifest.name)
    return 0


async def _list(ctl: CtlClient, args: argparse.Namespace) -> int:
    rows = await (await AppStore.open(ctl.nc, ctl.prefix)).list()
    emit(args, rows, columns=["name", "version", "source"], rows=rows, title="Applications")
    return 0
