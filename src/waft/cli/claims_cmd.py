"""`waft claims sign|inspect`: put signed claims into an actor module, and read them back."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from waft.claims import ClaimsError, inspect_actor, keystore, sign_actor
from waft.claims.keys import KeyPair, Role
from waft.cli.output import CliError, add_output_flag, emit

#: wash's shorthand flags for the standard capability contracts.
SHORTHAND_CAPS = {
    "http_server": "wasmcloud:httpserver", "http_client": "wasmcloud:httpclient",
    "keyvalue": "wasmcloud:keyvalue", "msg": "wasmcloud:messaging", "logging": "wasmcloud:builtin:logging",
    "numbergen": "wasmcloud:builtin:numbergen", "mlinference": "wasmcloud:mlinference",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("claims", help="sign and inspect actor claims")
    sub = parser.add_subparsers(dest="claims_command", metavar="ACTION", required=True)

    sign = sub.add_parser("sign", help="embed signed claims in a .wasm module")
    sign.add_argument("module", type=Path)
    sign.add_argument("-n", "--name", help="actor name (default: file stem)")
    sign.add_argument("-c", "--cap", action="append", default=[], help="capability contract id (repeatable)")
    sign.add_argument("-q", "--http_server", action="store_true", help="add wasmcloud:httpserver")
    sign.add_argument("-l", "--logging", action="store_true", help="add wasmcloud:builtin:logging")
    sign.add_argument("-g", "--msg", action="store_true", help="add wasmcloud:messaging")
    sign.add_argument("-k", "--keyvalue", action="store_true", help="add wasmcloud:keyvalue")
    sign.add_argument("--numbergen", action="store_true", help="add wasmcloud:builtin:numbergen")
    sign.add_argument("--mlinference", action="store_true", help="add wasmcloud:mlinference")
    sign.add_argument("-r", "--rev", type=int, default=0)
    sign.add_argument("-v", "--ver", default="")
    sign.add_argument("-a", "--call-alias", default="")
    sign.add_argument("-t", "--tag", action="append", default=[])
    sign.add_argument("-x", "--expires", type=float, help="expires in this many days")
    sign.add_argument("-b", "--not-before", type=float, help="valid only after this many days")
    sign.add_argument("-i", "--issuer", help="account seed (SA…) or key name; default: the stored 'account'")
    sign.add_argument("-s", "--subject", help="module seed (SM…) or key name; default: '<stem>_module'")
    sign.add_argument("-d", "--destination", type=Path, help="output path (default: <stem>_s.wasm)")
    sign.set_defaults(handler=_sign)

    inspect = sub.add_parser("inspect", help="show the claims of a signed module")
    inspect.add_argument("module", type=Path)
    inspect.add_argument("--jwt-only", action="store_true", help="print only the raw token")
    add_output_flag(inspect)
    inspect.set_defaults(handler=_inspect)


def resolve_key(value: str | None, default_name: str, role: Role) -> KeyPair:
    """A seed given inline, a stored key by name, or the default key (created when missing)."""
    try:
        if value is None:
            return keystore.load_or_create(default_name, role)
        if value.startswith("S") and len(value) == 58:
            return KeyPair.from_seed(value)
        pair = keystore.load(value)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if pair is None:
        raise CliError(f"{value!r} is neither a seed nor a stored key; `waft keys list` shows stored keys")
    return pair


def _read_module(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def _sign(args: argparse.Namespace) -> int:
    module = _read_module(args.module)
    caps = list(args.cap) + [cap for flag, cap in SHORTHAND_CAPS.items() if getattr(args, flag, False)]
    issuer = resolve_key(args.issuer, "account", Role.ACCOUNT)
    subject = resolve_key(args.subject, f"{args.module.stem}_module", Role.MODULE)
    try:
        signed = sign_actor(module, issuer=issuer, subject=subject, name=args.name or args.module.stem,
                            caps=caps, tags=args.tag, rev=args.rev, ver=args.ver, call_alias=args.call_alias,
                            expires_in_days=args.expires, not_before_days=args.not_before)
    except ClaimsError as exc:
        raise CliError(f"cannot sign {args.module}: {exc}") from None
    destination = args.destination or args.module.with_name(f"{args.module.stem}_s.wasm")
    destination.write_bytes(signed)
    print(f"Successfully signed {destination} with capabilities: {', '.join(caps) or '(none)'}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from waft.claims import wasm

    module = _read_module(args.module)
    try:
        if args.jwt_only:
            token = wasm.read_token(module)
            if token is None:
                raise ClaimsError("No claims found in source module")
            print(token)
            return 0
        claims = inspect_actor(module)
    except ClaimsError as exc:
        raise CliError(f"{args.module}: {exc}") from None

    def when(stamp: int | None) -> str:
        return "never" if stamp is None else dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat()

    emit(args, {"account": claims.issuer, "module": claims.subject, "name": claims.name,
                "hash": claims.module_hash, "capabilities": list(claims.caps), "tags": list(claims.tags),
                "version": claims.ver, "revision": claims.rev, "call_alias": claims.call_alias,
                "issued": when(claims.issued_at), "expires": when(claims.expires),
                "can_be_used": when(claims.not_before) if claims.not_before else "immediately"},
         title=f"{claims.name} - Module")
    return 0
