"""`waft ctl …`: the lattice's control interface from the shell, shaped like `wash ctl`."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from waft.app import wait_started
from waft.cli.call_cmd import add_arguments as add_call_arguments
from waft.cli.output import CliError, add_connection_flags, add_output_flag, console, emit, parse_pairs
from waft.ctl import CtlClient, CtlError, wait_for_event

#: The host id wash puts in the invocations it sends (wasmcloud-protocol §2.7).


def register(subparsers: argparse._SubParsersAction) -> None:
    ctl = subparsers.add_parser("ctl", help="query and steer the lattice")
    sub = ctl.add_subparsers(dest="ctl_command", metavar="ACTION", required=True)

    get = sub.add_parser("get", help="hosts, inventory, claims or links")
    get_sub = get.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, handler in (("hosts", _get_hosts), ("claims", _get_claims), ("links", _get_links)):
        p = get_sub.add_parser(name)
        add_connection_flags(p)
        add_output_flag(p)
        p.set_defaults(handler=_run(handler))
    inv = get_sub.add_parser("inventory")
    inv.add_argument("host_id", nargs="?", help="default: every host")
    add_connection_flags(inv)
    add_output_flag(inv)
    inv.set_defaults(handler=_run(_get_inventory))

    start = sub.add_parser("start", help="start an actor or a provider")
    start_sub = start.add_subparsers(dest="kind", metavar="KIND", required=True)
    sa = start_sub.add_parser("actor")
    sa.add_argument("ref", help="file path or OCI reference")
    sa.add_argument("--count", type=int, default=1)
    sa.add_argument("--host-id")
    sa.add_argument("--skip-wait", action="store_true")
    add_connection_flags(sa)
    sa.set_defaults(handler=_run(_start_actor))
    sp = start_sub.add_parser("provider")
    sp.add_argument("ref", help="python:<module>, a .par file or an OCI reference")
    sp.add_argument("-l", "--link-name", default="default")
    sp.add_argument("--host-id")
    config = sp.add_mutually_exclusive_group()
    config.add_argument("--config-json", type=Path, metavar="PATH",
                        help="a file holding the provider's configuration JSON (as wash's flag)")
    config.add_argument("--config-text", default="", metavar="JSON", help="the provider's configuration, as JSON text")
    sp.add_argument("--skip-wait", action="store_true")
    add_connection_flags(sp)
    sp.set_defaults(handler=_run(_start_provider))

    stop = sub.add_parser("stop", help="stop an actor, a provider or a host")
    stop_sub = stop.add_subparsers(dest="kind", metavar="KIND", required=True)
    xa = stop_sub.add_parser("actor")
    xa.add_argument("host_id")
    xa.add_argument("actor_id")
    xa.add_argument("-c", "--count", type=int, default=1,
                    help="how many instances to stop (default 1, as wash; 0 = all)")
    add_connection_flags(xa)
    xa.set_defaults(handler=_run(_stop_actor))
    xp = stop_sub.add_parser("provider")
    xp.add_argument("host_id")
    xp.add_argument("provider_id")
    xp.add_argument("link_name", nargs="?", default="default")
    xp.add_argument("contract_id", nargs="?", default="")
    add_connection_flags(xp)
    xp.set_defaults(handler=_run(_stop_provider))
    xh = stop_sub.add_parser("host")
    xh.add_argument("host_id")
    add_connection_flags(xh)
    xh.set_defaults(handler=_run(_stop_host))

    scale = sub.add_parser("scale", help="set an actor's instance count on a host")
    scale_sub = scale.add_subparsers(dest="kind", metavar="KIND", required=True)
    sc = scale_sub.add_parser("actor")
    sc.add_argument("host_id")
    sc.add_argument("actor_id")
    sc.add_argument("actor_ref", nargs="?", default="")
    sc.add_argument("-c", "--count", type=int, required=True)
    add_connection_flags(sc)
    sc.set_defaults(handler=_run(_scale_actor))

    link = sub.add_parser("link", help="put, delete or query link definitions")
    link_sub = link.add_subparsers(dest="link_command", metavar="ACTION", required=True)
    put = link_sub.add_parser("put")
    put.add_argument("actor_id")
    put.add_argument("provider_id")
    put.add_argument("contract_id")
    put.add_argument("values", nargs="*", help="KEY=VALUE link values")
    put.add_argument("-l", "--link-name", default="default")
    add_connection_flags(put)
    put.set_defaults(handler=_run(_link_put))
    dele = link_sub.add_parser("del")
    dele.add_argument("actor_id")
    dele.add_argument("contract_id")
    dele.add_argument("-l", "--link-name", default="default")
    add_connection_flags(dele)
    dele.set_defaults(handler=_run(_link_del))
    query = link_sub.add_parser("query")
    add_connection_flags(query)
    add_output_flag(query)
    query.set_defaults(handler=_run(_get_links))

    add_call_arguments(sub.add_parser("call", help="invoke an actor and print its answer (also `waft call`)"))


def _run(handler: Callable[[CtlClient, argparse.Namespace], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with CtlClient.connect(args.nats_url, args.lattice_prefix, args.timeout_ms / 1000) as ctl:
                return await handler(ctl, args)

        try:
            return asyncio.run(main())
        except CtlError as exc:
            raise CliError(str(exc)) from None

    return run


async def _get_hosts(ctl: CtlClient, args: argparse.Namespace) -> int:
    hosts = await ctl.get_hosts()
    rows = [{"id": h["id"], "name": h.get("friendly_name"), "uptime": h.get("uptime_human"),
             "version": h.get("version"), "labels": h.get("labels")} for h in hosts]
    emit(args, hosts, columns=["id", "name", "uptime", "version", "labels"], rows=rows, title="Hosts")
    return 0


async def _get_inventory(ctl: CtlClient, args: argparse.Namespace) -> int:
    host_ids = [args.host_id] if args.host_id else [h["id"] for h in await ctl.get_hosts()]
    inventories = [await ctl.get_inventory(h) for h in host_ids]
    if args.output == "json":
        emit(args, inventories if not args.host_id else inventories[0])
        return 0
    for inv in inventories:
        rows = [{"kind": "actor", "id": a["id"], "name": a["name"], "count": len(a["instances"]),
                 "ref": a["image_ref"], "link": "", "status": "running"} for a in inv["actors"]]
        rows += [{"kind": "provider", "id": p["id"], "name": p["name"], "count": 1, "ref": p["image_ref"],
                  "link": p["link_name"], "status": {True: "healthy", False: "unhealthy"}.get(p.get("healthy"),
                                                                                          "starting")}
                 for p in inv["providers"]]
        emit(args, inv, columns=["kind", "name", "id", "count", "link", "status", "ref"], rows=rows,
             title=f"Host {inv['host_id']}")
    return 0


async def _get_claims(ctl: CtlClient, args: argparse.Namespace) -> int:
    claims = await ctl.get_claims()
    emit(args, claims, columns=["name", "sub", "caps", "version", "rev", "call_alias"], rows=claims, title="Claims")
    return 0


async def _get_links(ctl: CtlClient, args: argparse.Namespace) -> int:
    links = await ctl.get_links()
    emit(args, links, columns=["actor_id", "provider_id", "contract_id", "link_name", "values"], rows=links,
         title="Links")
    return 0


def _local_ref(ref: str) -> str:
    """A file path means a file here: send the host an absolute path, since its working directory differs."""
    path = Path(ref)
    return str(path.resolve()) if path.exists() else ref


async def _start_actor(ctl: CtlClient, args: argparse.Namespace) -> int:
    args.ref = _local_ref(args.ref)
    host_id = await ctl.choose_host(args.host_id)
    async with ctl.events() as events:
        await ctl.start_actor(host_id, args.ref, args.count)
        if args.skip_wait:
            console.print(f"start of {args.ref} requested on {host_id}")
            return 0
        await wait_started(events, "actor_started", "actor_start_failed", args.ref, 30)
    console.print(f"actor {args.ref} started on host {host_id}")
    return 0


def _provider_config(args: argparse.Namespace) -> str:
    """`--config-json PATH` (a file, as in wash) or `--config-text JSON`; either must hold JSON."""
    if args.config_json is not None:
        try:
            text = args.config_json.read_text()
        except OSError as exc:
            raise CtlError(f"cannot read --config-json {args.config_json}: {exc.strerror}") from None
        where = f"--config-json {args.config_json}"
    else:
        text, where = args.config_text, "--config-text"
    if text.strip():
        try:
            json.loads(text)
        except ValueError as exc:
            raise CtlError(f"{where} is not JSON ({exc})") from None
    return text


async def _start_provider(ctl: CtlClient, args: argparse.Namespace) -> int:
    args.ref = _local_ref(args.ref)
    config = _provider_config(args)
    host_id = await ctl.choose_host(args.host_id)
    async with ctl.events() as events:
        await ctl.start_provider(host_id, args.ref, args.link_name, config)
        if args.skip_wait:
            console.print(f"start of {args.ref} requested on {host_id}")
            return 0
        await wait_started(events, "provider_started", "provider_start_failed", args.ref, 60)
    console.print(f"provider {args.ref} started on host {host_id} (link {args.link_name})")
    return 0


async def _stop_actor(ctl: CtlClient, args: argparse.Namespace) -> int:
    async with ctl.events() as events:
        await ctl.stop_actor(args.host_id, args.actor_id, args.count)
        await wait_for_event(events, "actor_stopped", public_key=args.actor_id)
    console.print(f"actor {args.actor_id} stopped")
    return 0


async def _stop_provider(ctl: CtlClient, args: argparse.Namespace) -> int:
    async with ctl.events() as events:
        await ctl.stop_provider(args.host_id, args.provider_id, args.link_name, args.contract_id)
        await wait_for_event(events, "provider_stopped", public_key=args.provider_id)
    console.print(f"provider {args.provider_id} stopped")
    return 0


async def _stop_host(ctl: CtlClient, args: argparse.Namespace) -> int:
    await ctl.stop_host(args.host_id)
    console.print(f"host {args.host_id} stopping")
    return 0


async def _scale_actor(ctl: CtlClient, args: argparse.Namespace) -> int:
    await ctl.scale_actor(args.host_id, args.actor_id, args.count, args.actor_ref)
    console.print(f"actor {args.actor_id} scaling to {args.count}")
    return 0


async def _link_put(ctl: CtlClient, args: argparse.Namespace) -> int:
    values = parse_pairs(args.values, "link value")
    await ctl.put_link(args.actor_id, args.provider_id, args.contract_id, args.link_name, values)
    console.print(f"link {args.actor_id[:8]}… -> {args.provider_id[:8]}… ({args.contract_id}) put")
    return 0


async def _link_del(ctl: CtlClient, args: argparse.Namespace) -> int:
    await ctl.delete_link(args.actor_id, args.contract_id, args.link_name)
    console.print(f"link {args.actor_id[:8]}… ({args.contract_id}) deleted")
    return 0
