"""OCI references (`registry:port/namespace/name:tag[@sha256:…]`) and the policies a host applies to them.

Two rules decide whether a reference may be used at all, both as wasmCloud's host has them (§9):
`:latest` and untagged references are refused unless latest is allowed, and a registry is spoken to
over plain HTTP only when the caller asks for it (`--insecure`) or lists it as allowed-insecure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from waft.errors import WaftError

#: OCI distribution-spec name grammar; docker-registry answers a plain-text 404 for anything else.
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class OciError(WaftError):
    """A reference, registry or artifact that cannot be used; the message says why and what to do.

    An OSError, so that callers which already treat I/O failures as "cannot start this" (the host)
    treat a failed pull the same way.
    """

    def __str__(self) -> str:  # OSError's str would show the args tuple when given more than one
        return str(self.args[0]) if self.args else ""


def looks_like_oci(ref: str) -> bool:
    """`registry.example:5000/ns/name:tag` names an OCI artifact; `./x`, `../x`, `python:mod` and other
    paths do not. Only the shape is judged here: `OciRef.parse` says what is wrong with a bad one."""
    if ref.startswith("oci://"):
        return True
    if ref.startswith(("./", "../", "/", "python:")) or "/" not in ref:
        return False
    head = ref.split("/", 1)[0]
    return ":" in head or "." in head or head == "localhost"


@dataclass(frozen=True)
class OciRef:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> OciRef:
        raw = text.strip().removeprefix("oci://")
        rest, _, digest = raw.partition("@")
        if "/" not in rest:
            raise OciError(f"{text!r} is not an OCI reference: expected REGISTRY/NAME:TAG, "
                           "e.g. 127.0.0.1:5000/waft/echo:0.1.0")
        registry, path = rest.split("/", 1)
        if not (":" in registry or "." in registry or registry == "localhost"):
            raise OciError(f"{text!r} does not start with a registry host (REGISTRY[:PORT]/NAME:TAG); "
                           "Docker Hub short names are not supported")
        repository, tag = path, None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            repository, tag = path.rsplit(":", 1)
            if not _TAG.match(tag):
                raise OciError(f"{text!r}: {tag!r} is not a valid tag (letters, digits, '.', '_', '-'; at most 128)")
        if not _REPOSITORY.match(repository):
            raise OciError(f"{text!r}: repository {repository!r} is not a valid OCI name (lowercase letters, "
                           "digits and separators . _ - between them, segments joined by /)")
        if digest and not _DIGEST.match(digest):
            raise OciError(f"{text!r}: {digest!r} is not a sha256 digest (sha256:<64 lowercase hex>)")
        return cls(registry, repository, tag, digest or None)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """The last path segment: `127.0.0.1:5000/waft/echo:1` -> `echo`."""
        return self.repository.rsplit("/", 1)[-1]

    def with_tag(self, tag: str) -> OciRef:
        return OciRef(self.registry, self.repository, tag, self.digest)


def check_latest(ref: OciRef, allow_latest: bool) -> OciRef:
    """Refuse `:latest` and untagged references unless allowed; return the ref with its tag made explicit."""
    if ref.digest:
        return ref  # pinned: the digest says exactly what runs
    if ref.tag is None or ref.tag == "latest":
        if not allow_latest:
            what = "has no tag, which means :latest" if ref.tag is None else "uses the :latest tag"
            raise OciError(f"{ref} {what}, and latest is refused because it can change under you: pin a version "
                           "tag or a digest, or allow it (--allow-latest, WAFT_OCI_ALLOW_LATEST=1)")
        return ref.with_tag("latest")
    return ref


def insecure_allowed(ref: OciRef, allowed_insecure: list[str] | tuple[str, ...]) -> bool:
    """Whether `ref`'s registry is on the allowed-insecure list (`host:port`, or `host` for any port)."""
    registry = ref.registry.lower()
    host = registry.rsplit(":", 1)[0] if ":" in registry and not registry.endswith("]") else registry
    for entry in allowed_insecure:
        entry = entry.strip().lower().removeprefix("http://").rstrip("/")
        if entry and entry in (registry, host):
            return True
    return False
