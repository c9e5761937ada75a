"""Anti-forgery: every invocation carries a JWT signed by the cluster key over a hash of itself (§2.3)."""

from __future__ import annotations

import time
from collections.abc import Collection

from waft.claims import jwt
from waft.claims.jwt import ClaimsError
from waft.claims.keys import KeyPair
from waft.errors import WaftError
from waft.lattice.types import Invocation, invocation_hash


class ForgedInvocation(WaftError, ValueError):
    """An invocation whose claims do not prove it came from a trusted host of this lattice."""


def sign_invocation(invocation: Invocation, cluster_key: KeyPair, payload: bytes | None = None) -> None:
    """Fill `encoded_claims`. `payload` is the full message when `msg` travels through object store."""
    body = invocation.msg if payload is None else payload
    claims = {
        "jti": jwt.nuid(), "iat": int(time.time()), "iss": cluster_key.public_key, "sub": invocation.id,
        "wascap": {"target_url": invocation.target_url, "origin_url": invocation.origin_url,
                   "hash": invocation_hash(invocation.origin_url, invocation.target_url,
                                           invocation.operation, body)},
    }
    invocation.encoded_claims = jwt.encode(claims, cluster_key)


def verify_invocation(invocation: Invocation, cluster_issuers: Collection[str],
                      payload: bytes | None = None) -> None:
    """Raise ForgedInvocation unless signature, issuer, URLs and payload hash all check out.

    Unlike the 0.x host, which skipped the hash for chunked messages, we check it against the
    dechunked payload, so a tampered object-store entry is caught too.
    """
    if not invocation.encoded_claims:
        raise ForgedInvocation("invocation is not signed (no encoded_claims)")
    try:
        claims = jwt.decode(invocation.encoded_claims)
    except ClaimsError as exc:
        raise ForgedInvocation(f"invocation claims rejected: {exc}") from None
    issuer = claims.get("iss")
    if issuer not in cluster_issuers:
        raise ForgedInvocation(f"invocation signed by {issuer}, not a cluster issuer of this lattice")
    meta = claims.get("wascap")
    if not isinstance(meta, dict):
        raise ForgedInvocation("invocation claims carry no wascap metadata")
    if meta.get("target_url") != invocation.target_url or meta.get("origin_url") != invocation.origin_url:
        raise ForgedInvocation("invocation claims name a different origin or target")
    body = invocation.msg if payload is None else payload
    expected = invocation_hash(invocation.origin_url, invocation.target_url, invocation.operation, body)
    if meta.get("hash") != expected:
        raise ForgedInvocation("invocation payload does not match its signed hash")
