"""Whose signatures a host accepts: the trust policy for actor and provider-archive issuers.

A signature proves only that *someone* signed; anyone can generate an account key and re-sign a swapped
module. So an issuer must be trusted: the account keys in this machine's key store (what `waft claims
sign`, `waft par create` and `actors/build.py` sign with), the keys added with `waft keys trust`
(one file each under `$WAFT_HOME/trusted/`, so concurrent writers never tear a list), and those named in
`WAFT_TRUSTED_ISSUERS`. `WAFT_TRUST=any` opts out, and says so in the log; `WAFT_ALLOWED_ISSUERS`, when
set, is an exact allow-list that replaces the rest (as before the policy existed).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from waft.claims import keystore
from waft.claims.jwt import ClaimsError
from waft.claims.keys import KeyError_, Role, decode_public_key
from waft.config import setting, waft_home
from waft.errors import SettingError

log = logging.getLogger(__name__)

TRUST_KEYS = "keys"
TRUST_ANY = "any"
MODES = (TRUST_KEYS, TRUST_ANY)


class UntrustedIssuer(ClaimsError):
    """A correctly signed actor or archive whose issuer this host does not trust."""


def trust_dir(env: Mapping[str, str] | None = None) -> Path:
    return waft_home(env) / "trusted"


def _account_key(public_key: str) -> str:
    public_key = public_key.strip()
    try:
        role, _ = decode_public_key(public_key)
    except KeyError_ as exc:
        raise UntrustedIssuer(f"{public_key[:12]!r} is not a valid public key ({exc})") from None
    if role is not Role.ACCOUNT:
        raise UntrustedIssuer(f"{public_key[:8]}… is a {role.name.lower()} key; issuers are account keys (A…)")
    return public_key


def trust(public_key: str) -> Path:
    """Add an account key to this machine's trusted issuers (`waft keys trust`)."""
    key = _account_key(public_key)
    directory = trust_dir()
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / key
    path.touch(mode=0o600, exist_ok=True)
    return path


def untrust(public_key: str) -> bool:
    """Remove a key added with `trust`; False when it was not there. Local account keys stay trusted."""
    key = _account_key(public_key)
    try:
        (trust_dir() / key).unlink()
    except FileNotFoundError:
        return False
    return True


def stored_trusted() -> list[str]:
    directory = trust_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.iterdir()):
        with contextlib.suppress(UntrustedIssuer):
            found.append(_account_key(path.name))
    return found


def local_accounts() -> list[str]:
    """The account keys whose seeds this machine holds: what it signs with is what it trusts."""
    return [pair.public_key for _, pair in keystore.list_keys() if pair.role is Role.ACCOUNT]


def _list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip()) if raw else ()


@dataclass(frozen=True)
class TrustPolicy:
    """`mode` "keys" (the default) or "any"; `extra` adds issuers; `only`, when set, is the whole list."""

    mode: str = TRUST_KEYS
    extra: tuple[str, ...] = ()
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingError(f"WAFT_TRUST must be one of {', '.join(MODES)}, got {self.mode!r}")

    @classmethod
    def from_settings(cls, env: Mapping[str, str] | None = None) -> TrustPolicy:
        env = os.environ if env is None else env
        mode = (setting("trust", TRUST_KEYS, env=env) or TRUST_KEYS).strip().lower()
        return cls(mode, _list(setting("trusted_issuers", env=env)), _list(setting("allowed_issuers", env=env)))

    def trusted(self) -> set[str]:
        """Read at each check, so `waft keys trust` takes effect on running hosts without a restart."""
        if self.only:
            return set(self.only)
        return {*local_accounts(), *stored_trusted(), *self.extra}

    def check(self, issuer: str, what: str) -> None:
        """Raise UntrustedIssuer naming the issuer and how to trust it, unless `issuer` may sign `what`."""
        if self.only:
            if issuer not in self.only:
                raise UntrustedIssuer(f"{what} issuer {issuer} is not on this host's allow-list (WAFT_ALLOWED_ISSUERS)")
            return
        if self.mode == TRUST_ANY:
            log.debug("accepting %s from %s: WAFT_TRUST=any", what, issuer)
            return
        if issuer not in self.trusted():
            raise UntrustedIssuer(f"{what} issuer {issuer} is not trusted; `waft keys trust {issuer}` trusts it "
                                  "(or WAFT_TRUSTED_ISSUERS; WAFT_TRUST=any accepts every issuer)")
