"""Seeds on disk, one `<name>.nk` file per key under `$WAFT_HOME/keys`, as wash keeps them."""

from __future__ import annotations

from pathlib import Path

from waft.claims.keys import KeyPair, Role
from waft.config import setting, waft_home


def keys_dir() -> Path:
    path = Path(setting("keys") or waft_home() / "keys")
    path.mkdir(parents=True, exist_ok=True)
    return path


def key_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name {name!r} must be a plain file name")
    return keys_dir() / f"{name}.nk"


def load(name: str) -> KeyPair | None:
    path = key_path(name)
    if not path.exists():
        return None
    return KeyPair.from_seed(path.read_text())


def save(name: str, pair: KeyPair) -> Path:
    path = key_path(name)
    path.write_text(pair.seed + "\n")
    path.chmod(0o600)
    return path


def load_or_create(name: str, role: Role) -> KeyPair:
    """The named key, generated and saved on first use (wash does this for account/module keys)."""
    pair = load(name)
    if pair is None:
        pair = KeyPair.generate(role)
        save(name, pair)
    elif pair.role is not role:
        raise ValueError(f"key {name!r} is a {pair.role.name.lower()} key, expected {role.name.lower()}")
    return pair


def list_keys() -> list[tuple[str, KeyPair]]:
    found = []
    for path in sorted(keys_dir().glob("*.nk")):
        try:
            found.append((path.stem, KeyPair.from_seed(path.read_text())))
        except ValueError:
            continue
    return found
