"""`waft reg push|pull|ping`: actors and provider archives to and from an OCI registry.

Like `wash reg`: one layer with wasmCloud's media types, `:latest` refused unless `--allow-latest`,
HTTPS unless `--insecure`, `-u/--user` and `-p/--password` (else `WASH_REG_USER`/`WASH_REG_PASSWORD`),
and wash's `pull -d/--digest` (the digest the artifact must have; the file goes to `--destination`).
Pushes and pulls show a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from waft.cli.output import CliError, add_output_flag, console_err, emit
from waft.config import setting
from waft.oci import OciError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("reg", help="push and pull actors and provider archives (OCI registries)")
    sub = parser.add_subparsers(dest="reg_command", metavar="ACTION", required=True)

    push = sub.add_parser("push", help="push a signed actor (.wasm) or a provider archive (.par[.gz])")
    push.add_argument("ref", help="REGISTRY[:PORT]/NAME:TAG, e.g. 127.0.0.1:5000/waft/echo:0.1.0")
    push.add_argument("file", type=Path)
    _policy_flags(push)
    add_output_flag(push)
    push.set_defaults(handler=_push)

    pull = sub.add_parser("pull", help="pull an actor or provider archive (digest-checked, cached)")
    pull.add_argument("ref")
    pull.add_argument("--destination", type=Path, help="output file (default: ./<name>.wasm or ./<name>.par.gz)")
    pull.add_argument("-d", "--digest", help="the manifest digest the artifact must have (sha256:…); "
                                             "nothing is written when it differs")
    _policy_flags(pull)
    add_output_flag(pull)
    pull.set_defaults(handler=_pull)

    ping = sub.add_parser("ping", help="check that a registry answers the OCI distribution API")
    ping.add_argument("registry", nargs="?", default=None,
                      help="REGISTRY[:PORT] (default: $WAFT_OCI_REGISTRY or 127.0.0.1:5000)")
    ping.add_argument("--insecure", action="store_true", help="use plain HTTP (a loopback registry)")
    _credential_flags(ping)
    add_output_flag(ping)
    ping.set_defaults(handler=_ping)


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--insecure", action="store_true", help="use plain HTTP (a loopback or test registry)")
    parser.add_argument("--allow-latest", action="store_true", help="allow :latest and untagged references")
    _credential_flags(parser)


def _credential_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--user", help="registry user (default: $WASH_REG_USER)")
    parser.add_argument("-p", "--password", help="registry password (default: $WASH_REG_PASSWORD)")


def _credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    """The flags, else `WAFT_REG_*`, else wash's `WASH_REG_USER`/`WASH_REG_PASSWORD`; None when neither is set."""
    user = setting("reg_user", flag=args.user, also=("WASH_REG_USER",))
    password = setting("reg_password", flag=args.password, also=("WASH_REG_PASSWORD",))
    if user is None and password is None:
        return None
    if user is None or password is None:
        raise CliError("registry credentials need both a user and a password (-u/-p, or WASH_REG_USER and "
                       "WASH_REG_PASSWORD)")
    return user, password


@contextlib.contextmanager
def _progress(args: argparse.Namespace) -> Iterator[object]:
    """A rich progress callback on stderr, shown from the first byte moved (none for `-o json`)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=console_err, transient=False, disable=getattr(args, "output", "text") == "json")
    tasks: dict[str, int] = {}

    def report(label: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total or None)
        bar.update(tasks[label], completed=done, total=total or None)

    try:
        yield report
    finally:
        if tasks:
            bar.stop()


def _push(args: argparse.Namespace) -> int:
    from waft.oci import push

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    try:
        with _progress(args) as report:
            result = push(args.ref, data, insecure=args.insecure, allow_latest=args.allow_latest,
                          filename=args.file.name, progress=report, credentials=_credentials(args))
    except OciError as exc:
        raise CliError(str(exc)) from None
    if args.output == "json":
        emit(args, result)
    else:
        print(f"Pushed {args.file} ({result['kind']}, {result['size']} bytes) to {result['ref']}\n"
              f"digest: {result['digest']}")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from waft.oci import pull

    try:
        with _progress(args) as report:
            artifact = pull(args.ref, insecure=args.insecure, allow_latest=args.allow_latest, progress=report,
                            credentials=_credentials(args))
    except OciError as exc:
        raise CliError(str(exc)) from None
    if args.digest and args.digest != artifact.manifest_digest:
        raise CliError(f"{artifact.ref} has digest {artifact.manifest_digest}, not {args.digest}: refused, "
                       "nothing written")
    suffix = ".wasm" if artifact.kind == "actor" else (".par.gz" if artifact.data[:2] == b"\x1f\x8b" else ".par")
    destination = args.destination or Path(artifact.ref.name + suffix)
    try:
        destination.write_bytes(artifact.data)
    except OSError as exc:
        raise CliError(f"cannot write {destination}: {exc.strerror}") from None
    result = {"ref": str(artifact.ref), "kind": artifact.kind, "destination": str(destination),
              "size": len(artifact.data), "digest": artifact.manifest_digest, "layer_digest": artifact.layer_digest,
              "media_type": artifact.media_type, "cached": artifact.cached}
    if args.output == "json":
        emit(args, result)
    else:
        print(f"Pulled {result['ref']} ({artifact.kind}, {result['size']} bytes"
              f"{', from the cache' if artifact.cached else ''}) to {destination}")
    return 0


def _ping(args: argparse.Namespace) -> int:
    from waft.oci import ping

    registry = setting("oci_registry", "127.0.0.1:5000", flag=args.registry or None)
    try:
        result = ping(registry, insecure=args.insecure, credentials=_credentials(args))
    except OciError as exc:
        raise CliError(str(exc)) from None
    if args.output == "json":
        emit(args, result)
    else:
        print(f"Registry {registry} is up ({result['api_version'] or 'OCI distribution API'})")
    return 0
