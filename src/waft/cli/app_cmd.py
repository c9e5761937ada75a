"""`waft app put|deploy|undeploy|list|get|history|del|status`: applications as `wash app` manages them.

Manifests are wadm's OAM (`apiVersion: core.oam.dev/v1beta1`) or Waft's shorthand; both are stored on
the lattice as wadm manifests, by name and version, so every command but `put` also takes a NAME.
A FILE argument (an existing file, or one ending in .yaml/.yml/.json) is read instead.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from waft.app import Manifest, ManifestError, status, undeploy
from waft.app_store import AppStore, AppStoreError, Record, manifest_of, version_entry
from waft.cli.output import CliError, add_connection_flags, add_output_flag, console, emit
from waft.ctl import CtlClient, CtlError
from waft.reconciler import LeaseHeld, app_lease, deploy_stored, leader_of

Handler = Callable[[CtlClient, argparse.Namespace], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction) -> None:
    app = subparsers.add_parser("app", help="deploy applications (wadm manifests) and keep their versions")
    sub = app.add_subparsers(dest="app_command", metavar="ACTION", required=True)

    def command(name: str, handler: Handler, help_text: str, *,
                aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, aliases=list(aliases))
        add_connection_flags(p, timeout_ms=5000)
        add_output_flag(p)
        p.set_defaults(handler=_wrap(handler))
        return p

    p = command("put", _put, "store a manifest as a new version (deploys nothing)")
    p.add_argument("manifest", type=Path, metavar="FILE")
    p = command("deploy", _deploy, "reconcile the lattice to a stored version, or to a FILE (stored first)")
    p.add_argument("app", metavar="NAME|FILE")
    p.add_argument("version", nargs="?", help="a stored version (default: the latest put)")
    p.add_argument("--host-id", help="start what is missing on this host when it qualifies "
                                     "(default: evenly over the eligible hosts)")
    p = command("undeploy", _undeploy, "stop what the app started (its versions stay stored)")
    p.add_argument("app", metavar="NAME|FILE")
    p = command("status", _status, "desired vs running, per component")
    p.add_argument("app", metavar="NAME|FILE")
    command("list", _list, "applications stored on this lattice, and which version is deployed")
    p = command("get", _get, "a stored manifest, as wadm YAML (or JSON with -o json)")
    p.add_argument("name")
    p.add_argument("version", nargs="?", help="default: the deployed version, else the latest")
    p = command("history", _history, "the stored versions of an application")
    p.add_argument("name")
    p = command("del", _delete, "forget a stored version, or every version (never a deployed one)",
                aliases=("delete",))
    p.add_argument("name")
    p.add_argument("version", nargs="?", help="default: every version")


def _wrap(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with CtlClient.connect(args.nats_url, args.lattice_prefix, args.timeout_ms / 1000) as ctl:
                return await handler(ctl, args)

        try:
            return asyncio.run(main())
        except (CtlError, ManifestError, AppStoreError, LeaseHeld) as exc:
            raise CliError(str(exc)) from None

    return run


def _is_file(arg: str) -> bool:
    """NAME or FILE: an existing file, or a name only a file would have (so a typo says "cannot read")."""
    return Path(arg).is_file() or arg.endswith((".yaml", ".yml", ".json")) or "/" in arg


async def _store(ctl: CtlClient) -> AppStore:
    return await AppStore.open(ctl.nc, ctl.prefix)


async def _named(store: AppStore, arg: str) -> tuple[Manifest, Record | None]:
    """The manifest a NAME|FILE argument means, and the app's stored record (None when never stored)."""
    if _is_file(arg):
        manifest = Manifest.load(Path(arg))
        return manifest, await store.get(manifest.name)
    record = await store.require(arg)
    return manifest_of(record), record


def _report(args: argparse.Namespace, manifest: Manifest, done: list[str], nothing: str) -> None:
    if args.output == "json":
        emit(args, {"app": manifest.name, "version": manifest.version, "actions": done})
    else:
        for line in done or [nothing]:
            console.print(f"{manifest.name}: {line}")


async def _put(ctl: CtlClient, args: argparse.Namespace) -> int:
    manifest = Manifest.load(args.manifest)
    outcome = await (await _store(ctl)).put(manifest, source=str(manifest.source))
    _report(args, manifest, [f"version {manifest.version} {outcome}"], "")
    return 0


def _owner() -> str:
    return f"waft app on {socket.gethostname()} (pid {os.getpid()})"


async def _deploy(ctl: CtlClient, args: argparse.Namespace) -> int:
    """Reconcile to the version asked for; what the previously deployed version had and this one lacks goes.

    Under the app's lease, so the lattice's reconciler does not work on the app at the same time."""
    store = await _store(ctl)
    if _is_file(args.app):
        if args.version:
            raise CliError("a FILE carries its own version: pass NAME VERSION to deploy a stored one")
        manifest = Manifest.load(Path(args.app))
        before = await store.get(manifest.name)
        await store.put(manifest, source=str(manifest.source), replace=True)
    else:
        before = await store.require(args.app)
        manifest = manifest_of(before, version_entry(before, args.version)["version"])
    done = await deploy_stored(ctl, store, manifest, before, owner=_owner(), host_id=args.host_id)
    _report(args, manifest, done, "already in the declared state")
    return 0


async def _undeploy(ctl: CtlClient, args: argparse.Namespace) -> int:
    """Marked undeployed first, under the app's lease: a reconciler pass already under way ends before, and
    none after touches the app, so nothing it would restart outlives the undeploy."""
    store = await _store(ctl)
    manifest, record = await _named(store, args.app)
    async with app_lease(ctl.nc, ctl.prefix, manifest.name, _owner()):
        if record is not None:
            await store.set_deployed(manifest.name, None)
        done = await undeploy(ctl, manifest)
    _report(args, manifest, done, "nothing was running")
    return 0


async def _status(ctl: CtlClient, args: argparse.Namespace) -> int:
    """Desired against running; in text, also whether the lattice keeps the app so and which host does."""
    manifest, record = await _named(await _store(ctl), args.app)
    rows = await status(ctl, manifest)
    emit(args, rows, columns=["kind", "name", "desired", "running", "ok"], rows=rows, title=manifest.name)
    if args.output != "json":
        leader = await leader_of(ctl.nc, ctl.prefix)
        if not (record and record.get("deployed")):
            console.print(f"{manifest.name} is not deployed: nothing keeps it as declared")
        elif leader:
            console.print(f"kept as declared by the reconciler on host {leader}")
        else:
            console.print("deployed, but no host runs a reconciler now (WAFT_RECONCILER=0 everywhere?)")
    return 0


async def _list(ctl: CtlClient, args: argparse.Namespace) -> int:
    rows = []
    for record in await (await _store(ctl)).list():
        shown = version_entry(record, record.get("deployed"))
        description = (shown.get("manifest") or {}).get("metadata", {}).get("annotations", {}).get("description", "")
        rows.append({"name": record["name"], "latest": record["versions"][-1]["version"],
                     "deployed": record.get("deployed") or "", "status": "deployed" if record.get("deployed")
                     else "undeployed", "description": description, "source": shown.get("source") or ""})
    emit(args, rows, columns=["name", "latest", "deployed", "status", "description", "source"], rows=rows,
         title="Applications")
    return 0


async def _get(ctl: CtlClient, args: argparse.Namespace) -> int:
    record = await (await _store(ctl)).require(args.name)
    oam = manifest_of(record, args.version).to_oam()
    if args.output == "json":
        emit(args, oam)
    else:
        console.print(yaml.safe_dump(oam, sort_keys=False).rstrip(), markup=False)
    return 0


async def _history(ctl: CtlClient, args: argparse.Namespace) -> int:
    record = await (await _store(ctl)).require(args.name)
    rows = [{"version": e["version"], "deployed": e["version"] == record.get("deployed"),
             "put_at": datetime.datetime.fromtimestamp(e["put_at"], datetime.UTC).isoformat(timespec="seconds")
             if e.get("put_at") else "", "source": e.get("source") or ""} for e in record["versions"]]
    emit(args, rows, columns=["version", "deployed", "put_at", "source"], rows=rows, title=args.name)
    return 0


async def _delete(ctl: CtlClient, args: argparse.Namespace) -> int:
    if not await (await _store(ctl)).delete(args.name, args.version):
        what = f"{args.name} version {args.version}" if args.version else args.name
        raise CliError(f"no application {what} is stored on this lattice (`waft app list`)")
    what = f"version {args.version}" if args.version else "every version"
    if args.output == "json":
        emit(args, {"app": args.name, "deleted": args.version or "all"})
    else:
        console.print(f"{args.name}: {what} deleted")
    return 0
