"""HTTP basic auth against an htpasswd file (bcrypt only), with v0.7.1's `AnonymousGet` rule:
a GET needs no credentials, every other method does; bad credentials are refused even on GET.

`waft up` runs its bindle server with auth on: anyone who can reach the port could otherwise push a
model under an existing name or yank the one being served. `ensure_bindle_credentials` makes one user
and a random password on first start (`$WAFT_HOME/bindle.credentials` and `bindle.htpasswd`, both
created 0600 by `open(2)`), and the clients Waft runs (`waft bindle`, `waft models push`, `up
--push-models`) use them for a loopback server when no credentials are given, so they need no flag.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import bcrypt

from waft.config import waft_home
from waft.errors import WaftError

USER = "waft"
CREDENTIALS_FILE = "bindle.credentials"
HTPASSWD_FILE = "bindle.htpasswd"


class Decision(Enum):
    ALLOW = "allow"
    UNAUTHORIZED = "unauthorized"  # 401: a header was sent and failed
    FORBIDDEN = "forbidden"  # 403: anonymous caller, non-GET method


class HtpasswdError(WaftError, ValueError):
    """The htpasswd file is unusable; the message names the line."""


def load_htpasswd(path: Path) -> dict[str, bytes]:
    """`user:hash` lines; like v0.7.1 only bcrypt hashes are accepted (`$2y$`, `$2b$`, `$2a$`)."""
    users: dict[str, bytes] = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            raise HtpasswdError(f"{path}:{number}: expected `user:<bcrypt hash>` (create with `htpasswd -B`)")
        users[user] = hashed.encode("ascii")
    return users


class BasicAuth:
    """Checks credentials; successful ones are remembered (by digest) since bcrypt is deliberately slow."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._verified: set[bytes] = set()

    async def decide(self, method: str, header: str | None) -> Decision:
        if header is None:
            return Decision.ALLOW if method == "GET" else Decision.FORBIDDEN
        return Decision.ALLOW if await self._check(header) else Decision.UNAUTHORIZED

    async def _check(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return False
        key = hashlib.sha256(header.encode("utf-8") + b"\0" + hashed).digest()
        if key in self._verified:
            return True
        ok = await asyncio.to_thread(_checkpw, password.encode("utf-8"), hashed)
        if ok:
            self._verified.add(key)
        return ok


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


@dataclass(frozen=True)
class BindleCredentials:
    pair: tuple[str, str]
    htpasswd: Path


def _write_private(path: Path, text: str) -> None:
    """A fresh file, 0600 from its creation (never chmod'ed after), renamed into place whole."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def stored_bindle_credentials(home: Path | None = None) -> tuple[str, str] | None:
    """The user and password `waft up` made, or None."""
    path = (home or waft_home()) / CREDENTIALS_FILE
    try:
        user, sep, password = path.read_text("utf-8").strip().partition(":")
    except OSError:
        return None
    return (user, password) if sep and user and password else None


def ensure_bindle_credentials(home: Path | None = None) -> BindleCredentials:
    """The local bindle user, made on first use; the htpasswd file is rebuilt when it is missing."""
    home = home or waft_home()
    pair = stored_bindle_credentials(home)
    if pair is None:
        pair = (USER, secrets.token_urlsafe(24))
        _write_private(home / CREDENTIALS_FILE, f"{pair[0]}:{pair[1]}\n")
    htpasswd = home / HTPASSWD_FILE
    users = {}
    with contextlib.suppress(OSError, HtpasswdError):
        users = load_htpasswd(htpasswd)
    if pair[0] not in users or not _checkpw(pair[1].encode(), users[pair[0]]):
        hashed = bcrypt.hashpw(pair[1].encode(), bcrypt.gensalt()).decode("ascii")
        _write_private(htpasswd, f"{pair[0]}:{hashed}\n")
    return BindleCredentials(pair, htpasswd)


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_credentials_for(url: str) -> tuple[str, str] | None:
    """The stored credentials for a server on this machine (never sent to another host), else None."""
    return stored_bindle_credentials() if _is_loopback_url(url) else None
