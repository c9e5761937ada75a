"""actors/vendor.py: third-party C fetched at build time from pinned registry packages, sha256-checked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def vendor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("waft_actors_vendor_test", ROOT / "actors" / "vendor.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_pinned_packages_give_their_sources(vendor: ModuleType) -> None:
    # The actor build (actors/build.py, run by the test session) fetched them already: this is the cache.
    for name, pkg in vendor.PACKAGES.items():
        got = vendor.ensure(name)
        assert got.root.is_dir() and got.root.is_relative_to(ROOT / "build" / "vendor")
        assert all((got.root / s).is_file() for s in pkg.sources)
        assert len(pkg.sha256) == 64 and pkg.version in got.root.name


def test_an_archive_that_is_not_the_pinned_one_is_refused(vendor: ModuleType, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor, "CACHE", tmp_path)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / vendor.PACKAGES["libwebp"].archive).write_bytes(b"not libwebp")
    with pytest.raises(vendor.VendorError, match="is not the pinned 7d6fab70"):
        vendor.ensure("libwebp")
    assert (tmp_path / "downloads" / "libwebp_1.5.0.orig.tar.gz.bad").is_file()
    assert not (tmp_path / "downloads" / "libwebp_1.5.0.orig.tar.gz").exists()


def test_an_unreachable_registry_says_what_to_fetch(vendor: ModuleType, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor, "CACHE", tmp_path)
    monkeypatch.setattr(vendor, "DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    with pytest.raises(vendor.VendorError) as info:
        vendor.ensure("libwebp")
    message = str(info.value)
    assert "could not fetch http://127.0.0.1:9/debian/pool/main/libw/libwebp/libwebp_1.5.0.orig.tar.gz" in message
    assert "by hand" in message and vendor.PACKAGES["libwebp"].sha256 in message


def test_unknown_packages_are_named(vendor: ModuleType) -> None:
    with pytest.raises(vendor.VendorError, match="unknown vendored package 'zlib'; known: libwebp, wuffs"):
        vendor.ensure("zlib")
