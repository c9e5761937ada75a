"""OCI distribution of actors and provider archives (issue 7); see docs/oci.md.

The host calls `fetch_actor` for an actor ref and `waft.oci.par.resolve_par_provider` for a provider
ref; both pull through the digest-keyed cache under `$WAFT_HOME/cache/oci`, refuse `:latest` unless
allowed, and use plain HTTP only for registries on the allowed-insecure list. The host then verifies
the claims as it does for a module read from disk.
"""

from __future__ import annotations

from waft.oci.fetch import fetch_actor, fetch_artifact, fetch_artifact_sync
from waft.oci.publish import detect_kind, push
from waft.oci.refs import OciError, OciRef, check_latest, insecure_allowed
from waft.oci.registry import (
    ACTOR_CONFIG,
    ACTOR_LAYER,
    PROVIDER_CONFIG,
    PROVIDER_LAYER,
    Artifact,
    Progress,
    ping,
    pull,
)

__all__ = ["ACTOR_CONFIG", "ACTOR_LAYER", "PROVIDER_CONFIG", "PROVIDER_LAYER", "Artifact", "OciError", "OciRef",
           "Progress", "check_latest", "detect_kind", "fetch_actor", "fetch_artifact", "fetch_artifact_sync",
           "insecure_allowed", "ping", "pull", "push"]
