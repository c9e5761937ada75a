"""`waft keys gen|get|list`: nkeys for every role, kept under `$WAFT_HOME/keys`; `trust|untrust|trusted`: whose
signed actors and provider archives this machine's hosts run besides its own account keys (`waft.claims.trust`)."""

from __future__ import annotations

import argparse

from waft.claims import keystore, trust
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

    add = sub.add_parser("trust", help="trust an account key as an issuer of actors and provider archives")
    add.add_argument("public_key", help="an account public key (A…)")
    add_output_flag(add)
    add.set_defaults(handler=_trust)

    remove = sub.add_parser("untrust", help="stop trusting an issuer added with `waft keys trust`")
    remove.add_argument("public_key")
    add_output_flag(remove)
    remove.set_defaults(handler=_untrust)

    trusted = sub.add_parser("trusted", help="list the trusted issuers and why each is trusted")
    add_output_flag(trusted)
    trusted.set_defaults(handler=_trusted)


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


def _trust(args: argparse.Namespace) -> int:
    try:
        path = trust.trust(args.public_key)
    except trust.UntrustedIssuer as exc:
        raise CliError(str(exc)) from None
    emit(args, {"trusted": args.public_key, "path": str(path)})
    return 0


def _untrust(args: argparse.Namespace) -> int:
    try:
        removed = trust.untrust(args.public_key)
    except trust.UntrustedIssuer as exc:
        raise CliError(str(exc)) from None
    if not removed:
        local = " (it is a local account key, always trusted)" if args.public_key in trust.local_accounts() else ""
        raise CliError(f"{args.public_key} was not added with `waft keys trust`{local}")
    emit(args, {"untrusted": args.public_key})
    return 0


def _trusted(args: argparse.Namespace) -> int:
    policy = trust.TrustPolicy.from_settings()
    rows = [{"public_key": key, "source": "key store"} for key in trust.local_accounts()]
    rows += [{"public_key": key, "source": "waft keys trust"} for key in trust.stored_trusted()]
    rows += [{"public_key": key, "source": "WAFT_TRUSTED_ISSUERS"} for key in policy.extra]
    title = {True: "WAFT_ALLOWED_ISSUERS replaces this list", False: f"policy: {policy.mode}"}[bool(policy.only)]
    emit(args, rows, columns=["public_key", "source"], rows=rows, title=title)
    return 0
