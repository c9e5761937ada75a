"""Seeds on a machine with other users: under the most permissive umask, no seed is ever readable by them.

`os.umask(0)` is what a careless service manager or container entrypoint leaves; each test sets it
and restores the one it found.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from waft.claims import KeyPair, Role, keystore


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def chmods(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, int]]:
    """Each chmod of a file, with the mode the file had just before it (what others could do until then)."""
    seen: list[tuple[Path, int]] = []
    real = Path.chmod

    def chmod(self: Path, mode: int, *, follow_symlinks: bool = True) -> None:
        seen.append((self, stat.S_IMODE(self.stat().st_mode)))
        real(self, mode, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "chmod", chmod)
    return seen


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folder_is_0700_and_seeds_are_0600_from_the_start(hostile_home: Path, chmods: list) -> None:
    path = keystore.save("operator", KeyPair.generate(Role.OPERATOR))
    created = keystore.load_or_create("cluster", Role.CLUSTER)
    assert _mode(hostile_home / "keys") == 0o700
    assert _mode(path) == 0o600 and _mode(keystore.key_path("cluster")) == 0o600
    # never wider for an instant: no seed file had to be narrowed after it was written
    assert [(p.name, oct(m)) for p, m in chmods if p.suffix == ".nk" and m & 0o077] == []
    assert keystore.load("cluster") == created
    assert sorted(p.name for p in (hostile_home / "keys").iterdir()) == ["cluster.nk", "operator.nk"]  # no temp left


def test_an_existing_open_folder_is_narrowed(hostile_home: Path) -> None:
    keys = hostile_home / "keys"
    keys.mkdir(mode=0o755)
    assert _mode(keys) == 0o755
    keystore.load_or_create("account", Role.ACCOUNT)
    assert _mode(keys) == 0o700


def test_replacing_a_key_keeps_it_private(hostile_home: Path) -> None:
    first, second = KeyPair.generate(Role.ACCOUNT), KeyPair.generate(Role.ACCOUNT)
    keystore.save("account", first)
    path = keystore.save("account", second)
    assert keystore.load("account") == second and _mode(path) == 0o600
    # an existing key wins over a new one: load_or_create never replaces it
    assert keystore.load_or_create("account", Role.ACCOUNT) == second
    with pytest.raises(keystore.KeystoreError, match="account key, expected cluster"):
        keystore.load_or_create("account", Role.CLUSTER)
