"""wascap JWTs: Ed25519 over `header.claims`, base64url without padding (wasmcloud-protocol §6.1)."""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from typing import Any

from waft.claims.keys import KeyError_, KeyPair, verify
from waft.errors import WaftError

HEADER = {"typ": "jwt", "alg": "Ed25519"}
#: The header as `encode` writes it: every invocation carries it, so `decode` compares instead of parsing.
HEADER_SEGMENT = base64.urlsafe_b64encode(json.dumps(HEADER, separators=(",", ":")).encode()).decode().rstrip("=")
_NUID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class ClaimsError(WaftError, ValueError):
    """A token that must be refused; the message says why in wascap's words where it has them."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ClaimsError(f"token segment is not base64url: {exc}") from None


def nuid() -> str:
    """A 22-character unique id, the shape wascap's `jti` has."""
    return "".join(_NUID_ALPHABET[b % 62] for b in os.urandom(22))


def encode(claims: dict[str, Any], signer: KeyPair) -> str:
    signed = f"{HEADER_SEGMENT}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{signed}.{b64url(signer.sign(signed.encode()))}"


def decode_unverified(token: str) -> dict[str, Any]:
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ClaimsError(f"a JWT has 3 dot-separated segments, this one has {len(parts)}")
    try:
        header = HEADER if parts[0] == HEADER_SEGMENT else json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClaimsError(f"JWT segment is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("alg") != "Ed25519":
        raise ClaimsError("JWT header must say alg Ed25519")
    if not isinstance(claims, dict):
        raise ClaimsError("JWT claims must be a JSON object")
    return claims


def decode(token: str, *, now: float | None = None) -> dict[str, Any]:
    """Verify signature, expiry and not-before; return the claims."""
    claims = decode_unverified(token)
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise ClaimsError("JWT has no issuer (iss)")
    header_b64, body_b64, signature_b64 = token.strip().split(".")
    try:
        valid = verify(issuer, f"{header_b64}.{body_b64}".encode(), b64url_decode(signature_b64))
    except KeyError_ as exc:
        raise ClaimsError(f"JWT issuer is not a valid public key: {exc}") from None
    if not valid:
        raise ClaimsError("Invalid signature on token")
    moment = time.time() if now is None else now
    expires = claims.get("exp")
    if isinstance(expires, int | float) and moment > expires:
        raise ClaimsError("Claims token expired")
    not_before = claims.get("nbf")
    if isinstance(not_before, int | float) and moment < not_before:
        raise ClaimsError("Claims token cannot be used yet")
    return claims
