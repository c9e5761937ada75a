"""Bindle ids (`name/version`) and parcel shas: parsing, canonical hashes, and the checks that keep
untrusted strings from ever becoming file-system paths.

v0.7.1 splits the id at the last `/` and requires a strict semver version; it does not restrict the
name. We keep that split, but the server also refuses names that could be mistaken for paths or that a
client would have to percent-encode (`..`, leading `/`, `%`, `@`, whitespace, ...). Storage never uses a
name as a path (it uses the sha256 of the id), so this is defence in depth and clearer errors, not a
correctness need.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import semver

from waft.errors import WaftError

#: Characters a bindle name may use on this server (ASCII only so URLs need no percent-encoding).
_NAME_SEGMENT = re.compile(r"^[A-Za-z0-9._+~-]+$")
#: A parcel sha as the server stores it: hex only (so it is always a safe directory name).
_SHA = re.compile(r"^[0-9a-fA-F]{1,128}$")


class InvalidId(WaftError, ValueError):
    """The string is not a usable `name/version` (or parcel sha); the message says why."""


def parse_version(text: str) -> semver.Version:
    """Strict semver, as Rust's `semver::Version::parse` (so `1.0` and `01.0.0` are rejected)."""
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        raise InvalidId(f"Version {text} is not a valid semantic version") from None


@dataclass(frozen=True, order=True)
class BindleId:
    """`name/version`; `str()` gives the canonical form used in URLs and the search index."""

    name: str
    version: str

    @classmethod
    def parse(cls, text: str, *, safe_name: bool = True) -> BindleId:
        """Split at the last `/` (names may contain `/`), check both halves.

        `safe_name=False` gives v0.7.1's looser rule (any non-empty name), used when merely reading
        invoices; the server passes True for anything that arrives over HTTP.
        """
        name, sep, version = text.rpartition("/")
        if not sep or not name or not version:
            raise InvalidId(f"Invalid bindle ID '{text}'. A bindle ID should be NAME/VERSION")
        parse_version(version)
        if safe_name:
            check_name(name)
        return cls(name, version)

    @property
    def sha(self) -> str:
        """Lowercase hex sha256 of `name/version`: the invoice's directory name in storage."""
        return hashlib.sha256(str(self).encode("utf-8")).hexdigest()

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"


def check_name(name: str) -> None:
    """Refuse names that look like paths or need percent-encoding; the message names the culprit."""
    if "%" in name:
        raise InvalidId(f"bindle name '{name}' contains '%': percent-encoded IDs are not accepted")
    if name.startswith("/"):
        raise InvalidId(f"bindle name '{name}' is absolute (starts with '/')")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidId(f"bindle name '{name}' has an empty, '.' or '..' path segment")
        if not _NAME_SEGMENT.match(segment):
            raise InvalidId(f"bindle name '{name}' may only use letters, digits, '/', '.', '_', '+', '~' and '-'")


def check_sha(sha: str) -> str:
    """A parcel sha must be hex: anything else (`..`, `/`, `%2e`) could escape the parcels directory."""
    if not _SHA.match(sha):
        raise InvalidId(f"invalid parcel SHA '{sha}': expected a lowercase hex sha256")
    return sha
