"""HTTP basic auth against an htpasswd file (bcrypt only), with v0.7.1's `AnonymousGet` rule:
a GET needs no credentials, every other method does; bad credentials are refused even on GET.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from enum import Enum
from pathlib import Path

import bcrypt

from waft.errors import WaftError


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
