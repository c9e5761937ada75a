"""`waft par create|inspect`: package a Python capability provider as a signed provider archive.

The archive is wasmCloud's PAR (a tar of `claims.jwt` and one `<target>.bin` per target); Waft's one
target is `py3-none-any`, a zip of the provider package's source (see docs/oci.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from waft.claims.keys import Role
from waft.cli.claims_cmd import resolve_key
from waft.cli.output import CliError, add_output_flag, emit
from waft.oci import OciError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("par", help="create and inspect provider archives (.par / .par.gz)")
    sub = parser.add_subparsers(dest="par_command", metavar="ACTION", required=True)

    create = sub.add_parser("create", help="package a Python provider into a signed provider archive")
    create.add_argument("-c", "--capid", required=True, help="capability contract id, e.g. wasmcloud:httpserver")
    create.add_argument("-v", "--vendor", required=True, help="vendor name")
    create.add_argument("-n", "--name", required=True, help="provider name")
    create.add_argument("--module", required=True, help="the provider's top-level package, run as python -m MODULE")
    create.add_argument("--source", type=Path,
                        help="directory that contains the package (default: where Python imports it from)")
    create.add_argument("-r", "--revision", type=int, default=0, help="revision number")
    create.add_argument("--version", dest="ver", default="", help="version string, e.g. 0.1.0")
    create.add_argument("--compress", action="store_true", help="gzip the archive (.par.gz)")
    create.add_argument("-i", "--issuer", help="account seed (SA…) or key name; default: the stored 'account'")
    create.add_argument("-s", "--subject",
                        help="service seed (SV…) or key name; default: '<module>_service' (the key python: refs use)")
    create.add_argument("-d", "--destination", type=Path,
                        help="output file (default: ./<name>.par or .par.gz, lowercased, spaces as _)")
    add_output_flag(create)
    create.set_defaults(handler=_create)

    inspect = sub.add_parser("inspect", help="show the claims and targets of a provider archive (file or OCI ref)")
    inspect.add_argument("archive", help="a .par / .par.gz file or an OCI reference")
    inspect.add_argument("--insecure", action="store_true", help="pull over plain HTTP")
    inspect.add_argument("--allow-latest", action="store_true", help="allow :latest and untagged references")
    inspect.add_argument("--unverified", action="store_true",
                         help="show the claims even when the signature or a target hash does not check out")
    add_output_flag(inspect)
    inspect.set_defaults(handler=_inspect)


def _create(args: argparse.Namespace) -> int:
    from waft.oci import par

    issuer = resolve_key(args.issuer, "account", Role.ACCOUNT)
    subject = resolve_key(args.subject, f"{args.module}_service", Role.SERVICE)
    try:
        data = par.create_par(args.module, capid=args.capid, vendor=args.vendor, name=args.name, issuer=issuer,
                              subject=subject, source=args.source, rev=args.revision, ver=args.ver,
                              compress=args.compress)
    except OciError as exc:
        raise CliError(f"cannot create the provider archive: {exc}") from None
    suffix = ".par.gz" if args.compress else ".par"
    destination = args.destination or Path(args.name.lower().replace(" ", "_") + suffix)
    try:
        destination.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {destination}: {exc.strerror}") from None
    archive = par.load_par(data)
    emit(args, {"destination": str(destination), "size": len(data), **archive.describe()},
         title=f"Successfully created {destination}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from waft.oci import par

    try:
        data = par.read_par_ref(args.archive, allow_latest=args.allow_latest, insecure=args.insecure)
        archive = par.load_par(data, verify=not args.unverified)
    except OciError as exc:
        raise CliError(f"{args.archive}: {exc}") from None
    info = archive.describe()
    info["target_hashes"] = dict(archive.meta.get("target_hashes") or {})
    info["verified"] = archive.verified
    emit(args, info, title=f"{archive.name} - Provider Archive")
    return 0
