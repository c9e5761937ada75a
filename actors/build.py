"""Build every actor to wasm32 with zig cc and sign it: `make actors` runs this.

An actor is a folder with an `actor.toml` (name, version, rev, sources, caps, tags, call_alias) under
`actors/` or `tests/actors/`. Each is compiled together with the SDK in `actors/sdk/` into
`build/actors/<name>.wasm` (unsigned, for tests of the unsigned path and for re-signing) and signed
into `build/actors/<name>_s.wasm` with the keys in `$WAFT_HOME/keys` (created on first use, as wash
does). Builds are incremental: an output newer than all of its inputs (SDK, sources, actor.toml, this
script) is left alone, so `make test` costs nothing when nothing changed.

Third-party C an actor names in `vendor = [...]` (actors/vendor.py: pinned registry packages, fetched and
sha256-checked at build time into build/vendor/) is compiled once per flag set into objects under
build/vendor/obj/ with warnings off, and linked in; its include folders reach the actor's own sources.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SDK_DIR = REPO / "actors" / "sdk"
ACTOR_ROOTS = (REPO / "actors", REPO / "tests" / "actors")
DEFAULT_OUT = REPO / "build" / "actors"

#: Measured when the build was designed: wasm32-wasi in the *reactor* model gives a real libc
#: malloc with zero WASI imports (only `wapc.*`) and an `_initialize` export instead of `_start`; -s drops
#: ~900 KB of debug info; zig's default 16 MiB stack would make every instance reserve 257 pages, so the
#: stack is capped at 64 KiB (2 initial pages), letting small memory limits work.
CFLAGS = (
    "--target=wasm32-wasi", "-O3", "-mexec-model=reactor", "-s", "-Wl,-z,stack-size=65536",
    "-std=c11", "-Wall", "-Wextra",
)


class BuildError(Exception):
    """A compile or signing failure; the message carries the compiler's own output."""


@dataclass(frozen=True)
class ActorSpec:
    """One actor's `actor.toml`, resolved against its folder."""

    folder: Path
    name: str
    version: str
    rev: int
    sources: tuple[Path, ...]
    caps: tuple[str, ...]
    tags: tuple[str, ...] = ()
    call_alias: str = ""
    cflags: tuple[str, ...] = ()
    vendor: tuple[str, ...] = ()

    @classmethod
    def load(cls, toml_path: Path) -> ActorSpec:
        with toml_path.open("rb") as fh:
            meta = tomllib.load(fh)
        folder = toml_path.parent
        try:
            name = str(meta["name"])
            sources = tuple(folder / s for s in meta["sources"])
        except KeyError as exc:
            raise BuildError(f"{toml_path}: missing required key {exc.args[0]!r}") from None
        if not name or "/" in name or name.startswith("."):
            raise BuildError(f"{toml_path}: name {name!r} must be a plain file name")
        missing = [str(s) for s in sources if not s.is_file()]
        if missing:
            raise BuildError(f"{toml_path}: source files not found: {', '.join(missing)}")
        return cls(
            folder=folder, name=name, version=str(meta.get("version", "0.0.0")), rev=int(meta.get("rev", 0)),
            sources=sources, caps=tuple(meta.get("caps", ())), tags=tuple(meta.get("tags", ())),
            call_alias=str(meta.get("call_alias", "")), cflags=tuple(meta.get("cflags", ())),
            vendor=tuple(meta.get("vendor", ())),
        )


def discover(roots: Iterable[Path] = ACTOR_ROOTS) -> list[ActorSpec]:
    """Every `<root>/<folder>/actor.toml`, sorted by name so builds and logs are deterministic."""
    specs = [ActorSpec.load(p) for root in roots for p in sorted(root.glob("*/actor.toml"))]
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            raise BuildError(f"two actors are named {spec.name!r}: {seen[spec.name]} and {spec.folder}")
        seen[spec.name] = spec.folder
    return sorted(specs, key=lambda s: s.name)


def sdk_files() -> list[Path]:
    return sorted([*SDK_DIR.glob("*.c"), *SDK_DIR.glob("*.h")])


def _newest_mtime(paths: Iterable[Path]) -> float:
    return max((p.stat().st_mtime for p in paths), default=0.0)


def _is_fresh(output: Path, inputs: Iterable[Path]) -> bool:
    return output.exists() and output.stat().st_mtime > _newest_mtime(inputs)


VENDOR_PY = Path(__file__).resolve().parent / "vendor.py"


def _vendor_module():  # a script loaded by path, as the tests import build.py
    if "waft_actors_vendor" in sys.modules:
        return sys.modules["waft_actors_vendor"]
    mod_spec = importlib.util.spec_from_file_location("waft_actors_vendor", VENDOR_PY)
    assert mod_spec and mod_spec.loader
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules["waft_actors_vendor"] = module  # dataclasses look their module up there
    mod_spec.loader.exec_module(module)
    return module


def vendor_objects(spec: ActorSpec) -> tuple[list[Path], list[Path]]:
    """Fetch the actor's vendored packages and compile their sources (cached): (objects, include dirs)."""
    if not spec.vendor:
        return [], []
    vendor = _vendor_module()
    objects: list[Path] = []
    includes: list[Path] = []
    jobs: list[tuple[list[str], Path]] = []
    for name in spec.vendor:
        try:
            pkg = vendor.ensure(name)
        except vendor.VendorError as exc:
            raise BuildError(f"actor {spec.name!r} needs vendored package {name!r}: {exc}") from None
        includes += [pkg.root / i for i in pkg.includes]
        # -Os: measured on 1 MP photos, WebP/GIF/BMP decode as fast as with -O3 and the module is 110 KB
        # smaller (262 KB instead of 372 KB). Warnings off: not our code to fix.
        flags = [*(f for f in CFLAGS if f not in ("-O3", "-Wall", "-Wextra", "-std=c11", "-mexec-model=reactor")),
                 "-Os", "-std=gnu11", "-w", *spec.cflags, *pkg.cflags, *(f"-I{pkg.root / i}" for i in pkg.includes)]
        key = hashlib.sha256("\0".join(flags).encode()).hexdigest()[:12]
        obj_dir = vendor.CACHE / "obj" / f"{pkg.name}-{pkg.version}-{key}"
        for src in pkg.sources:
            obj = obj_dir / (src.replace("/", "__") + ".o")
            objects.append(obj)
            if not _is_fresh(obj, [pkg.root / src, VENDOR_PY]):
                jobs.append(([sys.executable, "-m", "ziglang", "cc", *flags, "-c", str(pkg.root / src)], obj))

    def run(job: tuple[list[str], Path]) -> None:
        cmd, obj = job
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.with_name(f".{obj.name}.{os.getpid()}.tmp")
        proc = subprocess.run([*cmd, "-o", str(tmp)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BuildError(f"compiling vendored source for {spec.name!r} failed (exit {proc.returncode}):\n"
                             f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
        os.replace(tmp, obj)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(run, jobs))
    return objects, includes


def compile_actor(spec: ActorSpec, output: Path) -> None:
    """zig cc the SDK plus the actor's sources into `output`, atomically (no half-written module)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    objects, includes = vendor_objects(spec)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    cmd = [sys.executable, "-m", "ziglang", "cc", *CFLAGS, f'-DWAFT_VERSION="{waft_version()}"', *spec.cflags,
           f"-I{SDK_DIR}",
           *(f"-I{i}" for i in includes), *map(str, sorted(SDK_DIR.glob("*.c"))), *map(str, spec.sources),
           *map(str, objects), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"compiling actor {spec.name!r} failed (exit {proc.returncode}):\n"
                         f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.stderr.strip():  # warnings: show them, but they do not fail the build
        print(proc.stderr.rstrip(), file=sys.stderr)
    os.replace(tmp, output)


def sign(spec: ActorSpec, unsigned: Path, signed: Path) -> None:
    """Embed claims signed by the `account` key for the `<name>_module` subject key."""
    from waft.claims import Role, keystore, sign_actor

    account = keystore.load_or_create("account", Role.ACCOUNT)
    module_key = keystore.load_or_create(f"{spec.name}_module", Role.MODULE)
    data = sign_actor(unsigned.read_bytes(), issuer=account, subject=module_key, name=spec.name,
                      caps=spec.caps, tags=spec.tags, rev=spec.rev, ver=spec.version,
                      call_alias=spec.call_alias)
    tmp = signed.with_name(f".{signed.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, signed)


#: Where the package version lives: actors see it as the WAFT_VERSION macro (the API's GET /v2 says it).
VERSION_PY = REPO / "src" / "waft" / "__init__.py"


def waft_version() -> str:
    """The package's version, read from its source so a build needs no installed waft."""
    found = re.search(r'^__version__ = "([^"]+)"', VERSION_PY.read_text(), re.M)
    if found is None:
        raise BuildError(f"{VERSION_PY} has no __version__")
    return found.group(1)


def _needs_compile(spec: ActorSpec, unsigned: Path) -> bool:
    return not _is_fresh(unsigned, [*sdk_files(), *spec.sources, spec.folder / "actor.toml", VERSION_PY,
                                    Path(__file__).resolve(), *([VENDOR_PY] if spec.vendor else [])])


def _needs_signing(spec: ActorSpec, unsigned: Path, signed: Path) -> bool:
    # Deliberately not tied to the key files: the test suite runs with a throwaway $WAFT_HOME, and
    # re-signing there would churn build/ with keys nobody keeps. `--force` re-signs after a key change.
    return not _is_fresh(signed, [unsigned, spec.folder / "actor.toml"])


def build(names: Sequence[str] | None = None, out_dir: Path = DEFAULT_OUT, *, force: bool = False,
          jobs: int | None = None) -> dict[str, tuple[Path, Path]]:
    """Build and sign the named actors (all when None) where stale; return {name: (unsigned, signed)}.

    Raises BuildError naming the first actor that failed, with the compiler's output.
    """
    specs = discover()
    if names:
        unknown = sorted(set(names) - {s.name for s in specs})
        if unknown:
            raise BuildError(f"no such actor(s): {', '.join(unknown)}; known: {', '.join(s.name for s in specs)}")
        specs = [s for s in specs if s.name in names]
    outputs = {s.name: (out_dir / f"{s.name}.wasm", out_dir / f"{s.name}_s.wasm") for s in specs}

    # Compiles are independent subprocesses: run them in parallel.
    stale = [s for s in specs if force or _needs_compile(s, outputs[s.name][0])]
    with ThreadPoolExecutor(max_workers=jobs or min(4, os.cpu_count() or 1)) as pool:
        futures = [(s, pool.submit(compile_actor, s, outputs[s.name][0])) for s in stale]
        for spec, future in futures:
            future.result()
            unsigned = outputs[spec.name][0]
            print(f"built  {spec.name}.wasm ({unsigned.stat().st_size} B)", file=sys.stderr)

    # Signing is milliseconds, and serial so that the shared account key is created exactly once.
    for spec in specs:
        unsigned, signed = outputs[spec.name]
        if force or _needs_signing(spec, unsigned, signed):
            sign(spec, unsigned, signed)
            print(f"signed {signed.name} ({signed.stat().st_size} B)", file=sys.stderr)
    return outputs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="actors to build (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even if outputs look fresh")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default build/actors)")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="parallel compiles")
    args = parser.parse_args(argv)
    try:
        built = build(args.names or None, args.out, force=args.force, jobs=args.jobs)
    except BuildError as exc:
        print(f"actors/build.py: {exc}", file=sys.stderr)
        return 1
    for name, (unsigned, signed) in built.items():
        print(f"{name}: {unsigned} ({unsigned.stat().st_size} B), {signed} ({signed.stat().st_size} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
