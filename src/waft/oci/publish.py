"""Pushing what a user hands us: tell an actor module from a provider archive, refuse anything unsigned."""

from __future__ import annotations

from typing import Any

from waft.claims import ClaimsError, inspect_actor
from waft.oci import par
from waft.oci.refs import OciError, OciRef
from waft.oci.registry import Credentials, Progress, push_target
from waft.oci.registry import push as push_kind


def detect_kind(data: bytes) -> str:
    """`actor` for a signed wasm module, `provider` for a provider archive; OciError for anything else."""
    if data.startswith(b"\0asm"):
        try:
            inspect_actor(data)
        except ClaimsError as exc:
            raise OciError(f"this wasm module cannot be pushed as an actor: {exc} (sign it with "
                           "`waft claims sign`)") from None
        return "actor"
    if par.looks_like_par(data):
        par.load_par(data)  # raises ParError (an OciError) when it is not a valid, signed archive
        return "provider"
    raise OciError("neither a signed actor module (.wasm) nor a provider archive (.par / .par.gz)")


def push(ref: OciRef | str, data: bytes, *, insecure: bool = False, allow_latest: bool = False,
         filename: str | None = None, progress: Progress | None = None,
         credentials: Credentials | None = None) -> dict[str, Any]:
    """Push an actor or provider archive, its kind detected from the bytes; return what was pushed."""
    ref = push_target(ref, allow_latest=allow_latest)  # a bad reference is named before bad bytes
    return push_kind(ref, data, kind=detect_kind(data), insecure=insecure, allow_latest=allow_latest,
                     filename=filename, progress=progress, credentials=credentials)
