"""Provider archives built to attack the loader: a subject that is a path, a sparse bomb, odd members.

Every archive here is signed by a real account key, so the refusals prove that a valid signature is
not enough: the claims' values and the tar's headers are judged before they are used.
"""

from __future__ import annotations

import io
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest
from waft_testing import ROOT

from waft.claims import KeyPair, Role, jwt
from waft.oci import par as parlib

SOURCE = ROOT / "tests" / "support"


def _target() -> bytes:
    return parlib.build_python_target("waft_testprovider", SOURCE)


def _token(target: bytes, **overrides: object) -> str:
    """Claims as `sign_provider` writes them, with any field replaced (the signature stays valid)."""
    issuer = KeyPair.generate(Role.ACCOUNT)
    claims: dict[str, object] = {
        "jti": jwt.nuid(), "iat": int(time.time()), "iss": issuer.public_key,
        "sub": KeyPair.generate(Role.SERVICE).public_key,
        "wascap": {"name": "Test provider", "capid": "waft:test", "vendor": "waft", "rev": 1, "ver": "0.1.0",
                   "target_hashes": {parlib.PYTHON_TARGET: parlib.target_hash(target)}}}
    wascap = overrides.pop("wascap", {})
    claims.update(overrides)
    claims["wascap"].update(wascap)  # type: ignore[union-attr]
    return jwt.encode(claims, issuer)


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("subject", ["V/../../../escaped", "V" + "A" * 55, "V..", "<absolute>",
                                     KeyPair.generate(Role.ACCOUNT).public_key],
                         ids=["dotdot", "not-a-key", "V..", "absolute", "account-key"])
def test_subject_must_be_a_real_service_key(subject: str, hostile_home: Path) -> None:
    absolute = hostile_home.parent / "absolute-escape"
    subject = subject.replace("<absolute>", str(absolute))
    target = _target()
    data = parlib.pack_archive(_token(target, sub=subject), {parlib.PYTHON_TARGET: target})
    with pytest.raises(parlib.ParError, match="subject"):
        parlib.load_par(data)
    # An archive read unverified (`waft par inspect --unverified`) is still never extracted by its subject.
    unverified = parlib.load_par(data, verify=False)
    before = _files_under(hostile_home)
    with pytest.raises(parlib.ParError, match="subject"):
        parlib.extract_python_target(unverified)
    assert not (hostile_home / "escaped").exists() and not absolute.exists()
    assert {p for p in _files_under(hostile_home) - before if parlib.par_cache_root() not in p.parents} == set()


@pytest.mark.parametrize("rev", ["../1", 1.5, -3, True, "7"])
def test_revision_must_be_an_integer(rev: object) -> None:
    target = _target()
    data = parlib.pack_archive(_token(target, wascap={"rev": rev}), {parlib.PYTHON_TARGET: target})
    with pytest.raises(parlib.ParError, match="rev"):
        parlib.load_par(data)


def test_a_good_archive_extracts_under_the_cache_only(hostile_home: Path) -> None:
    target = _target()
    archive = parlib.load_par(parlib.pack_archive(_token(target), {parlib.PYTHON_TARGET: target}))
    directory, module = parlib.extract_python_target(archive)
    assert module == "waft_testprovider"
    assert parlib.par_cache_root().resolve() in directory.parents
    assert directory == parlib.par_cache_root().resolve() / archive.service / "1"


def _sparse_archive(apparent: int) -> bytes:
    """A tar whose target is a PAX (GNU 0.1) sparse file: one byte stored, `apparent` bytes when read."""
    target = _target()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        token = _token(target).encode()
        info = tarfile.TarInfo(parlib.CLAIMS_ENTRY)
        info.size = len(token)
        tar.addfile(info, io.BytesIO(token))
        bomb = tarfile.TarInfo(f"{parlib.PYTHON_TARGET}.bin")
        bomb.size = 1
        bomb.pax_headers = {"GNU.sparse.map": "0,1", "GNU.sparse.size": str(apparent)}
        tar.addfile(bomb, io.BytesIO(b"\0"))
    return buffer.getvalue()


def test_sparse_member_is_refused_before_it_is_read() -> None:
    data = _sparse_archive(500 << 20)  # under the 512 MiB budget: only its sparseness gives it away
    assert len(data) <= 10240  # one tar record
    tracemalloc.start()
    try:
        with pytest.raises(parlib.ParError, match="sparse"):
            parlib.load_par(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"loading a {len(data)}-byte archive allocated {peak >> 20} MiB"


def test_declared_sizes_are_bounded_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target()
    data = parlib.pack_archive(_token(target), {parlib.PYTHON_TARGET: target})
    monkeypatch.setenv("WAFT_PAR_MAX_BYTES", str(len(target) // 2))
    with pytest.raises(parlib.ParError, match="WAFT_PAR_MAX_BYTES"):
        parlib.load_par(data)
    monkeypatch.setenv("WAFT_PAR_MAX_CLAIMS_BYTES", "64")
    monkeypatch.delenv("WAFT_PAR_MAX_BYTES")
    with pytest.raises(parlib.ParError, match="WAFT_PAR_MAX_CLAIMS_BYTES"):
        parlib.load_par(data)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, content in members:
            info.size = len(content) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return buffer.getvalue()


def test_links_devices_and_duplicates_are_refused() -> None:
    target = _target()
    token = _token(target).encode()
    claims, bin_ = tarfile.TarInfo(parlib.CLAIMS_ENTRY), tarfile.TarInfo(f"{parlib.PYTHON_TARGET}.bin")
    assert parlib.load_par(_tar((claims, token), (bin_, target))).capid == "waft:test"

    link = tarfile.TarInfo("x86_64-linux.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    fifo = tarfile.TarInfo("fifo.bin")
    fifo.type = tarfile.FIFOTYPE
    for odd, why in ((link, "not a regular file"), (fifo, "not a regular file"),
                     (tarfile.TarInfo(parlib.CLAIMS_ENTRY), "two claims"),
                     (tarfile.TarInfo(f"{parlib.PYTHON_TARGET}.bin"), "appears twice")):
        content = token if odd.name == parlib.CLAIMS_ENTRY else target
        with pytest.raises(parlib.ParError, match=why):
            parlib.load_par(_tar((claims, token), (bin_, target), (odd, content)))
