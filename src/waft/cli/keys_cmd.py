"""`waft keys gen|get|list`: nkeys for every role, kept under `$WAFT_HOME/keys`."""

from __future__ import annotations

import argparse

from waft.claims import keystore
from waft.claims.keys import KeyPair, Role
from waft.cli.output import CliError, add_output_flag, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="generate and list nkeys")
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    gen = sub.add_parser("gen", help="generate a key pair")
    gen.add_argument("role", help="account, cluster, module, service, server, operator or user")
    gen.add_argument("--name", help="also save the seed as NAME.nk in the key store")
    add_output_flag(gen)
    gen.set_defaults(handler=_gen)

    get = sub.add_parser("get", help="show a stored key")
    get.add_argument("name")
    add_output_flag(get)
    get.set_defaults(handler=_get)

    ls = sub.add_parser("list", help="list stored keys")
    add_output_flag(ls)
    ls.set_defaults(handler=_list)


def _gen(args: argparse.Namespace) -> int:
    try:
        role = Role.parse(args.role)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    pair = KeyPair.generate(role)
    data = {"public_key": pair.public_key, "seed": pair.seed}
    if args.name:
        data["path"] = str(keystore.save(args.name, pair))
    emit(args, data)
    return 0


def _get(args: argparse.Namespace) -> int:
    pair = keystore.load(args.name)
    if pair is None:
        raise CliError(f"no key named {args.name!r} in {keystore.keys_dir()}; `waft keys list` shows them")
    emit(args, {"name": args.name, "role": pair.role.name.lower(), "public_key": pair.public_key,
                "seed": pair.seed})
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = [{"name": name, "role": pair.role.name.lower(), "public_key": pair.public_key}
            for name, pair in keystore.list_keys()]
    emit(args, rows, columns=["name", "role", "public_key"], rows=rows, title=str(keystore.keys_dir()))
    return 0
