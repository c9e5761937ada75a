"""A local, content-addressed parcel cache: `<root>/<sha256>`.

Keyed only by the sha256 (not by bindle id) because parcels are content-addressed: the same model
file shared by two bindles is downloaded once. Entries are written to a unique `.part` and renamed
only after their digest checked out, so a reader never sees a partial or wrong file. A hit is hashed
again before it is handed out: the cache lives on a disk anyone with `$WAFT_HOME` can write, and a
model file changed there would otherwise run as if it came from the bindle server. A hit that no
longer matches is removed, so the caller fetches it afresh.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

from waft.bindle.ids import check_sha
from waft.config import waft_home

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    return waft_home() / "cache" / "parcels"


def file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


class ParcelCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, sha: str) -> Path:
        return self.root / check_sha(sha).lower()

    def get(self, sha: str) -> Path | None:
        """The cached file when its bytes still hash to `sha`; None on a miss or a corrupt entry (dropped)."""
        path = self.path(sha)
        if not path.is_file():
            return None
        actual = file_sha256(path)
        if actual != sha.lower():
            log.warning("cached parcel %s hashes to %s (the file was altered); dropped, fetching it again",
                        path, actual)
            path.unlink(missing_ok=True)
            return None
        return path

    def part_file(self, sha: str) -> Path:
        """A fresh temporary name: concurrent downloads of one sha never write the same file."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".{check_sha(sha).lower()}.{uuid.uuid4().hex}.part"

    def commit(self, part: Path, sha: str) -> Path:
        final = self.path(sha)
        os.replace(part, final)
        return final
