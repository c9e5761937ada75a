"""The local content-addressed cache: `$WAFT_HOME/cache/oci/{blobs,manifests}/sha256/<hex>`.

A blob is stored under its digest once its bytes were checked against that digest, and checked again
every time it is read: a cached file that no longer matches is refused (and removed, so the next pull
fetches it afresh), never handed to the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from waft.config import waft_home
from waft.oci.refs import OciError


def cache_root() -> Path:
    return waft_home() / "cache" / "oci"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _path(kind: str, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise OciError(f"unsupported or malformed digest {digest!r} (only sha256 is supported)")
    return cache_root() / kind / "sha256" / hexdigest


def blob_path(digest: str) -> Path:
    """Where the blob with `digest` is (or would be) cached."""
    return _path("blobs", digest)


def manifest_path(digest: str) -> Path:
    return _path("manifests", digest)


def read(kind: str, digest: str) -> bytes | None:
    """The cached bytes for `digest`, verified; None when not cached; OciError when the file was altered."""
    path = _path(kind, digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    actual = digest_of(data)
    if actual != digest:
        with contextlib.suppress(OSError):
            path.unlink()
        raise OciError(f"cached {kind[:-1]} {digest} is corrupt: its bytes hash to {actual} (the file "
                       f"{path} was altered); refused and removed from the cache, so the next pull fetches it again")
    return data


def write(kind: str, digest: str, data: bytes) -> Path:
    """Store `data` under `digest` (which it must match), atomically."""
    if digest_of(data) != digest:
        raise OciError(f"refusing to cache bytes under {digest}: they hash to {digest_of(data)}")
    path = _path(kind, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
