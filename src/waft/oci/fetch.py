"""Pulling the way a host does: HTTPS unless allowed-insecure, `:latest` only when allowed, of one kind."""

from __future__ import annotations

import asyncio

from waft.oci.refs import OciError, OciRef, check_latest, insecure_allowed
from waft.oci.registry import Artifact, pull


def fetch_artifact_sync(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None,
                        kind: str | None = None) -> Artifact:
    """Pull `ref` the way a host does: HTTPS unless its registry is allowed-insecure; optionally of one kind."""
    parsed = check_latest(OciRef.parse(ref), allow_latest)
    artifact = pull(parsed, insecure=insecure_allowed(parsed, allowed_insecure or []), allow_latest=allow_latest)
    if kind is not None and artifact.kind != kind:
        wanted = "an actor module" if kind == "actor" else "a provider archive"
        raise OciError(f"{ref} is {'an actor module' if artifact.kind == 'actor' else 'a provider archive'}, "
                       f"not {wanted}")
    return artifact


async def fetch_artifact(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None,
                         kind: str | None = None) -> Artifact:
    return await asyncio.to_thread(fetch_artifact_sync, ref, allow_latest=allow_latest,
                                   allowed_insecure=allowed_insecure, kind=kind)


async def fetch_actor(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None) -> bytes:
    """The module bytes of the actor at `ref` (digest-verified; the caller verifies the claims)."""
    artifact = await fetch_artifact(ref, allow_latest=allow_latest, allowed_insecure=allowed_insecure, kind="actor")
    return artifact.data
