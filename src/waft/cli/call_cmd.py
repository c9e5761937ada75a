"""`waft call ACTOR OPERATION [JSON] [--data FILE] [--save FILE]`: invoke an actor, as `wash call` does.

The same command is `waft ctl call` (its older spelling). The payload is JSON (inline or, with
`-d/--data`, from a file) sent as msgpack; the answer is decoded back to JSON when it is msgpack, and
`--save` writes the answer's raw bytes to a file instead of printing them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from waft.cli.output import CliError, add_connection_flags, add_output_flag, console, emit
from waft.config import setting
from waft.ctl import CtlClient, CtlError


def register(subparsers: argparse._SubParsersAction) -> None:
    add_arguments(subparsers.add_parser("call", help="invoke an actor and print its answer (as `wash call`)"))


def add_arguments(call: argparse.ArgumentParser) -> None:
    call.add_argument("actor_id", metavar="ACTOR", help="the actor's public key (M…)")
    call.add_argument("operation", metavar="OPERATION", help="e.g. HttpServer.HandleRequest")
    call.add_argument("payload", nargs="?", help="JSON, sent as msgpack (or raw text with --raw)")
    call.add_argument("-d", "--data", type=Path, metavar="FILE", help="read the payload from FILE instead")
    call.add_argument("--save", type=Path, metavar="FILE", help="write the answer's raw bytes to FILE")
    call.add_argument("--raw", action="store_true", help="send the payload bytes as they are")
    call.add_argument("--cluster-seed", default=setting("cluster_seed", wasmcloud="cluster_seed"),
                      help="the lattice's cluster seed (default: $WASMCLOUD_CLUSTER_SEED, else the one "
                           "`waft up` keeps in the key store)")
    add_connection_flags(call)
    add_output_flag(call)
    call.set_defaults(handler=run)


def _payload(args: argparse.Namespace) -> bytes:
    from waft.lattice.codec import pack

    if args.data is not None and args.payload is not None:
        raise CliError("give the payload inline or with --data FILE, not both")
    if args.data is not None:
        try:
            text = args.data.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read --data {args.data}: {exc.strerror}") from None
    else:
        text = (args.payload if args.payload is not None else "").encode()
    if args.raw:
        return text
    if not text.strip():
        return b""  # no payload, as for an operation that takes none
    try:
        return pack(json.loads(text))
    except ValueError as exc:
        raise CliError(f"payload is not JSON ({exc}); use --raw to send it as it is") from None


def run(args: argparse.Namespace) -> int:
    payload = _payload(args)

    async def main() -> bytes:
        async with CtlClient.connect(args.nats_url, args.lattice_prefix, args.timeout_ms / 1000) as ctl:
            return await ctl.call_actor(args.actor_id, args.operation, payload, cluster_seed=args.cluster_seed,
                                        timeout=args.timeout_ms / 1000)

    try:
        answer = asyncio.run(main())
    except CtlError as exc:
        raise CliError(str(exc)) from None
    if args.save is not None:
        try:
            args.save.write_bytes(answer)
        except OSError as exc:
            raise CliError(f"cannot write --save {args.save}: {exc.strerror}") from None
        if args.output == "json":
            emit(args, {"saved": str(args.save), "bytes": len(answer)})
        else:
            console.print(f"answer ({len(answer)} bytes) saved to {args.save}")
        return 0
    decoded = _decode(answer)
    if args.output == "json" or not isinstance(decoded, str):
        print(json.dumps(decoded, default=lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)))
    else:
        print(decoded)
    return 0


def _decode(answer: bytes) -> Any:
    """msgpack back to JSON values; an answer that is not msgpack is shown as text."""
    from waft.lattice.codec import DecodeError, unpack

    try:
        decoded: Any = unpack(answer)
    except DecodeError:
        decoded = answer.decode("utf-8", "replace")
    return decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else decoded
