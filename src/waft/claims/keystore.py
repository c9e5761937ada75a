"""Seeds on disk, one `<name>.nk` file per key under `$WAFT_HOME/keys`, as wash keeps them.

A seed is the whole secret of a key, so it is never readable by anyone else, not even for an
instant: the folder is created 0700 (and an existing one narrowed to it), and every seed file is
created 0600 by `open(2)` itself, in a fresh file renamed into place, never chmod'ed after the fact
(the umask would decide what it is until then).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from pathlib import Path

from waft.claims.keys import KeyPair, Role
from waft.config import setting, waft_home
from waft.errors import WaftError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
SEED_MODE = 0o600
#: A seed file holds one 58-character seed; anything larger is not one.
MAX_SEED_FILE = 4096


class KeystoreError(WaftError, ValueError):
    """A key name that cannot be a file name, or a stored key of the wrong role."""


def keys_dir() -> Path:
    path = Path(setting("keys") or waft_home() / "keys")
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(mode & ~0o077 | DIR_MODE)
        except OSError as exc:  # not ours to change: say so rather than fail every command
            log.warning("keys folder %s is mode %o and cannot be narrowed to 0700 (%s)", path, mode, exc)
    return path


def key_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise KeystoreError(f"key name {name!r} must be a plain file name")
    return keys_dir() / f"{name}.nk"


def _read_seed(path: Path) -> KeyPair:
    with path.open(encoding="ascii", errors="replace") as fh:
        return KeyPair.from_seed(fh.read(MAX_SEED_FILE))


def load(name: str) -> KeyPair | None:
    path = key_path(name)
    if not path.exists():
        return None
    return _read_seed(path)


def _write_new(directory: Path, pair: KeyPair) -> Path:
    """A fresh, fully written 0600 file holding the seed, under a name no one else uses."""
    tmp = directory / f".{uuid.uuid4().hex}.nk.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, SEED_MODE)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(pair.seed + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def save(name: str, pair: KeyPair) -> Path:
    """Store (or replace) the key `name`; a reader sees the old seed or the new one, never half of one."""
    path = key_path(name)
    tmp = _write_new(path.parent, pair)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _create(path: Path, pair: KeyPair) -> KeyPair:
    """Store `pair` at `path` unless a key is already there, in which case that key wins and is returned.

    Two processes creating the same key at once (two hosts sharing `$WAFT_HOME`) then agree on one."""
    tmp = _write_new(path.parent, pair)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_seed(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return pair


def load_or_create(name: str, role: Role) -> KeyPair:
    """The named key, generated and saved on first use (wash does this for account/module keys)."""
    pair = load(name)
    if pair is None:
        pair = _create(key_path(name), KeyPair.generate(role))
    if pair.role is not role:
        raise KeystoreError(f"key {name!r} is a {pair.role.name.lower()} key, expected {role.name.lower()}")
    return pair


def list_keys() -> list[tuple[str, KeyPair]]:
    found = []
    for path in sorted(keys_dir().glob("*.nk")):
        try:
            found.append((path.stem, _read_seed(path)))
        except (ValueError, OSError):
            continue
    return found
