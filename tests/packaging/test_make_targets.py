"""The Makefile as a newcomer meets it: `make system-deps` (run by `make test`) installs missing Debian packages
only as root or through sudo, and otherwise fails printing the exact command to run; `make venv` says what it is
installing and lets pip show its progress instead of minutes of silence.

The system-deps case without root runs make for real as the unprivileged `nobody`, with a PATH that has no sudo,
and names a package that does not exist, so nothing is installed whatever happens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = "waft-no-such-package"


def make(*args: str, prefix: tuple[str, ...] = (), cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run([*prefix, "make", "--no-print-directory", "-s", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_installed_packages_are_left_alone() -> None:
    packages = [p for p in ("bash", "coreutils") if shutil.which("dpkg-query")]
    if not packages:
        pytest.skip("no dpkg-query: not a Debian machine")
    done = make("system-deps", f"APT_PACKAGES={' '.join(packages)}")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become nobody")
def test_without_root_or_sudo_it_fails_printing_the_command() -> None:
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    if shutil.which("sudo", path="/usr/bin:/bin"):
        pytest.skip("sudo is installed in /usr/bin: make would use it")
    # nobody may not read a checkout under a 0700 folder (mktemp -d): give it a readable copy of the Makefile
    with tempfile.TemporaryDirectory(dir="/tmp") as scratch:
        os.chmod(scratch, 0o755)
        shutil.copy(ROOT / "Makefile", scratch)
        done = make("system-deps", f"APT_PACKAGES=coreutils {MISSING}", prefix=nobody, cwd=Path(scratch))
    assert done.returncode != 0, done
    assert f"needs the Debian packages {MISSING}; as root, run: apt-get install -y {MISSING}" in done.stderr, done
    assert "coreutils" not in done.stderr  # installed: not asked for


def test_venv_install_shows_progress() -> None:
    """What `make venv` would run (make -n: nothing runs): an announcement, and pip not silenced."""
    done = subprocess.run(["make", "-n", "-W", "pyproject.toml", ".venv/.installed"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    install = [line for line in lines if "pip install" in line and "-c constraints.txt" in line]
    assert len(install) == 1 and "--quiet" not in install[0] and "--progress-bar on" in install[0], lines
    assert any("installing Python packages into .venv" in line for line in lines[:lines.index(install[0])]), lines
