"""Actor claims: sign a module, and decide whether a signed module may run."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from waft.claims import jwt, wasm
from waft.claims.jwt import ClaimsError
from waft.claims.keys import KeyPair, Role
from waft.claims.trust import TrustPolicy

DAY = 86400


@dataclass(frozen=True)
class ActorClaims:
    """What a host learns from a module's token (wascap `Actor` claims)."""

    subject: str
    issuer: str
    name: str
    module_hash: str
    caps: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    rev: int = 0
    ver: str = ""
    call_alias: str = ""
    issued_at: int = 0
    expires: int | None = None
    not_before: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_jwt_claims(cls, claims: dict[str, Any]) -> ActorClaims:
        meta = claims.get("wascap")
        if not isinstance(meta, dict):
            raise ClaimsError("token has no wascap metadata: not an actor's claims")
        return cls(
            subject=str(claims.get("sub", "")),
            issuer=str(claims.get("iss", "")),
            name=str(meta.get("name") or ""),
            module_hash=str(meta.get("hash") or ""),
            caps=tuple(meta.get("caps") or ()),
            tags=tuple(meta.get("tags") or ()),
            rev=int(meta.get("rev") or 0),
            ver=str(meta.get("ver") or ""),
            call_alias=str(meta.get("call_alias") or ""),
            issued_at=int(claims.get("iat") or 0),
            expires=claims.get("exp"),
            not_before=claims.get("nbf"),
            raw=claims,
        )

    def summary(self) -> dict[str, str]:
        """The shape of a `get.claims` entry: every value a string, lists comma-joined (§5)."""
        return {
            "call_alias": self.call_alias, "iss": self.issuer, "name": self.name,
            "caps": ",".join(self.caps), "rev": str(self.rev), "tags": ",".join(self.tags),
            "version": self.ver, "sub": self.subject,
        }


def sign_actor(module: bytes, *, issuer: KeyPair, subject: KeyPair, name: str,
               caps: Iterable[str] = (), tags: Iterable[str] = (), rev: int = 0, ver: str = "",
               call_alias: str = "", expires_in_days: float | None = None,
               not_before_days: float | None = None, section: str = "jwt") -> bytes:
    """Return `module` with a signed claims section: the `wash claims sign` of Waft."""
    if issuer.role is not Role.ACCOUNT:
        raise ClaimsError(f"an actor's issuer must be an account key (A…), got a {issuer.role.name.lower()} key")
    if subject.role is not Role.MODULE:
        raise ClaimsError(f"an actor's subject must be a module key (M…), got a {subject.role.name.lower()} key")
    now = int(time.time())
    meta: dict[str, Any] = {"name": name, "hash": wasm.module_hash(module), "tags": list(tags),
                            "caps": list(caps), "rev": rev, "ver": ver, "prov": False}
    if call_alias:
        meta["call_alias"] = call_alias
    claims: dict[str, Any] = {}
    if expires_in_days is not None:
        claims["exp"] = now + int(expires_in_days * DAY)
    claims.update({"jti": jwt.nuid(), "iat": now, "iss": issuer.public_key, "sub": subject.public_key})
    if not_before_days is not None:
        claims["nbf"] = now + int(not_before_days * DAY)
    claims["wascap"] = meta
    return wasm.embed_token(module, jwt.encode(claims, issuer), section)


def inspect_actor(module: bytes) -> ActorClaims:
    """Read the claims without judging them (for `waft claims inspect`)."""
    token = wasm.read_token(module)
    if token is None:
        raise ClaimsError("No claims found in source module")
    return ActorClaims.from_jwt_claims(jwt.decode_unverified(token))


def verify_actor(module: bytes, *, allowed_issuers: Iterable[str] | None = None,
                 now: float | None = None, trust: TrustPolicy | None = None) -> ActorClaims:
    """Everything a host checks before it runs a module; raise ClaimsError naming the first failure."""
    token = wasm.read_token(module)
    if token is None:
        raise ClaimsError("No claims found in source module (the actor is unsigned)")
    claims = ActorClaims.from_jwt_claims(jwt.decode(token, now=now))
    if not claims.subject.startswith("M"):
        raise ClaimsError(f"claims subject {claims.subject[:8]}… is not a module key")
    actual = wasm.module_hash(module)
    if claims.module_hash != actual:
        raise ClaimsError(f"module hash mismatch: claims say {claims.module_hash[:12]}…, module is "
                          f"{actual[:12]}… (the module was changed after signing)")
    allowed = set(allowed_issuers or ())
    if allowed and claims.issuer not in allowed:
        raise ClaimsError(f"issuer {claims.issuer} is not on this host's allow-list")
    if trust is not None:
        trust.check(claims.issuer, f"actor {claims.name or claims.subject}")
    return claims
