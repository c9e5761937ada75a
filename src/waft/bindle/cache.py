"""A local, content-addressed parcel cache: `<root>/<sha256>`.

Keyed only by the sha256 (not by bindle id) because parcels are content-addressed: the same model
file shared by two bindles is downloaded once. Entries are written to a unique `.part` and renamed
only after their digest checked out, so a reader never sees a partial or wrong file, and a cache hit
needs no network and no re-hashing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from waft.bindle.ids import check_sha
from waft.config import waft_home


def default_cache_dir() -> Path:
    return waft_home() / "cache" / "parcels"


class ParcelCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, sha: str) -> Path:
        return self.root / check_sha(sha).lower()

    def get(self, sha: str) -> Path | None:
        path = self.path(sha)
        return path if path.is_file() else None

    def part_file(self, sha: str) -> Path:
        """A fresh temporary name: concurrent downloads of one sha never write the same file."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".{check_sha(sha).lower()}.{uuid.uuid4().hex}.part"

    def commit(self, part: Path, sha: str) -> Path:
        final = self.path(sha)
        os.replace(part, final)
        return final
