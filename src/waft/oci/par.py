"""Provider archives (PAR) holding Python providers, in wasmCloud's layout (wasmcloud-protocol §4.4).

A PAR is a tar (gzip-compressed when `.par.gz`) of `claims.jwt` plus one `<target>.bin` per target.
wasmCloud's targets are native executables named by `ARCH-OS`; a Waft provider is Python, so its one
target is `py3-none-any` (the wheel tag of pure-Python code) and its `.bin` is a zip holding:

    <module>/...            the provider package's source (no __pycache__)
    __main__.py             a launcher, so `python py3-none-any.bin` runs the provider (a zipapp)
    waft-provider.json      {"format": 1, "module": "<module>"}

The claims JWT is wascap's provider token: iss = account `A…`, sub = service `V…`, and
`wascap = {name, capid, vendor, rev, ver, target_hashes: {target: SHA-256 upper hex of the .bin}}`.
Loading verifies the signature, the roles of both keys and every target's hash.

`resolve_par_provider` extracts the zip to `$WAFT_HOME/cache/par/<service key>/<revision>/` (once;
a marker holds the target hash it was extracted from) and returns a ProviderSpec whose command is
`<this interpreter> -m <module>` with PYTHONPATH led by that directory. The provider's own
dependencies (aiohttp, waft's SDK) come from the host's environment: an archive carries the
provider's code, not a virtualenv.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waft.claims import jwt
from waft.claims.jwt import ClaimsError
from waft.claims.keys import KeyError_, KeyPair, Role, decode_public_key
from waft.claims.trust import TrustPolicy
from waft.config import int_setting, waft_home
from waft.oci.refs import OciError

PYTHON_TARGET = "py3-none-any"
CLAIMS_ENTRY = "claims.jwt"
METADATA = "waft-provider.json"
MAX_UNPACKED = 512 * 1024 * 1024
#: A claims token is a few hundred bytes; anything near this is not one.
MAX_CLAIMS = 1024 * 1024
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
LAUNCHER = '''"""Waft provider archive launcher: `python <archive or its extracted directory>` runs the provider."""
import runpy

runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
'''


class ParError(OciError):
    """A provider archive that cannot be built, read or trusted; the message says which and why."""


@dataclass(frozen=True)
class ProviderArchive:
    token: str
    claims: dict[str, Any]
    targets: dict[str, bytes]
    compressed: bool = False
    verified: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return str(self.claims.get("iss", ""))

    @property
    def service(self) -> str:
        return str(self.claims.get("sub", ""))

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or "")

    @property
    def capid(self) -> str:
        return str(self.meta.get("capid") or "")

    @property
    def vendor(self) -> str:
        return str(self.meta.get("vendor") or "")

    @property
    def rev(self) -> int:
        return int(self.meta.get("rev") or 0)

    @property
    def ver(self) -> str:
        return str(self.meta.get("ver") or "")

    @property
    def revision(self) -> int:
        """wasmCloud's `revision_or_iat`: the rev when set, else the issue time."""
        return self.rev or int(self.claims.get("iat") or 0)

    def describe(self) -> dict[str, Any]:
        """What `waft par inspect` shows (wash's fields)."""
        return {"account": self.issuer, "service": self.service, "name": self.name, "capability_contract_id":
                self.capid, "vendor": self.vendor, "version": self.ver, "revision": self.rev,
                "targets": sorted(self.targets), "issued": _when(self.claims.get("iat")),
                "compressed": self.compressed}


def _when(stamp: Any) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat() if isinstance(stamp, int | float) else ""


def target_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


# ---------------------------------------------------------------------------------------------- create
def package_dir(module: str, source: Path | None) -> Path:
    """The directory of package `module`: under `source` when given, else where Python imports it from."""
    if "." in module or not module.isidentifier():
        raise ParError(f"--module must be a top-level package name, got {module!r}")
    if source is not None:
        candidate = source / module
        if not (candidate / "__init__.py").is_file():
            raise ParError(f"{source} has no package {module!r} (expected {candidate}/__init__.py)")
        path = candidate
    else:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ParError(f"package {module!r} is not importable here; name its parent directory with --source")
        path = Path(next(iter(spec.submodule_search_locations)))
    if not (path / "__main__.py").is_file():
        raise ParError(f"package {module!r} has no __main__.py, so `python -m {module}` cannot run it")
    return path


def build_python_target(module: str, source: Path | None = None) -> bytes:
    """The `py3-none-any.bin` zip of a provider package; byte-identical for identical sources."""
    root = package_dir(module, source)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _skipped(p.relative_to(root)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)

        add("__main__.py", LAUNCHER.format(module=module).encode())
        add(METADATA, json.dumps({"format": 1, "module": module}, sort_keys=True).encode())
        for path in files:
            add(f"{module}/{path.relative_to(root).as_posix()}", path.read_bytes())
    return buffer.getvalue()


def _skipped(relative: Path) -> bool:
    return any(part in _SKIP_DIRS or part.startswith(".") for part in relative.parts[:-1]) or \
        relative.name.endswith(_SKIP_SUFFIXES) or relative.name.startswith(".")


def sign_provider(targets: dict[str, bytes], *, issuer: KeyPair, subject: KeyPair, name: str, capid: str,
                  vendor: str, rev: int = 0, ver: str = "", expires_in_days: float | None = None) -> str:
    if issuer.role is not Role.ACCOUNT:
        raise ParError(f"a provider's issuer must be an account key (A…), got a {issuer.role.name.lower()} key")
    if subject.role is not Role.SERVICE:
        raise ParError(f"a provider's subject must be a service key (V…), got a {subject.role.name.lower()} key")
    if not capid or not name or not vendor:
        raise ParError("a provider archive needs a capability contract id, a name and a vendor")
    now = int(time.time())
    claims: dict[str, Any] = {}
    if expires_in_days is not None:
        claims["exp"] = now + int(expires_in_days * 86400)
    claims.update({"jti": jwt.nuid(), "iat": now, "iss": issuer.public_key, "sub": subject.public_key,
                   "wascap": {"name": name, "capid": capid, "vendor": vendor, "rev": rev, "ver": ver,
                              "target_hashes": {t: target_hash(d) for t, d in sorted(targets.items())}}})
    return jwt.encode(claims, issuer)


def pack_archive(token: str, targets: dict[str, bytes], *, compress: bool = False) -> bytes:
    """The tar (GNU headers, as provider-archive writes) of claims.jwt and each `<target>.bin`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, mode in [(CLAIMS_ENTRY, token.encode(), 0o644),
                                 *((f"{t}.bin", d, 0o755) for t, d in sorted(targets.items()))]:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def create_par(module: str, *, capid: str, vendor: str, name: str, issuer: KeyPair, subject: KeyPair,
               source: Path | None = None, rev: int = 0, ver: str = "", compress: bool = False) -> bytes:
    """`waft par create`: package a Python provider and sign it."""
    targets = {PYTHON_TARGET: build_python_target(module, source)}
    token = sign_provider(targets, issuer=issuer, subject=subject, name=name, capid=capid, vendor=vendor,
                          rev=rev, ver=ver)
    return pack_archive(token, targets, compress=compress)


# ------------------------------------------------------------------------------------------------ load
def looks_like_par(data: bytes) -> bool:
    """gzip magic, or a tar header (`ustar` at offset 257)."""
    return data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar"


def max_unpacked() -> int:
    """`WAFT_PAR_MAX_BYTES`: how much an archive may unpack to (gzip, tar members and the target's zip)."""
    return int_setting("par_max_bytes", MAX_UNPACKED)


def max_claims() -> int:
    return int_setting("par_max_claims_bytes", MAX_CLAIMS)


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ParError(f"malformed provider archive: bad gzip data ({exc})") from None
    if len(out) > limit:
        raise ParError(f"malformed provider archive: it unpacks to more than {_mib(limit)} (WAFT_PAR_MAX_BYTES)")
    if not inflater.eof:
        raise ParError("malformed provider archive: the gzip stream is truncated")
    return out


def _mib(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size} bytes"


def _members(tar: tarfile.TarFile, limit: int) -> tuple[tarfile.TarInfo, dict[str, tarfile.TarInfo]]:
    """The claims member and one member per target, from the headers alone.

    Nothing is read here: a tar header may declare any size (and a sparse member expands to it from a
    few bytes), so every member is judged by what it declares before a byte of it is unpacked."""
    claims: tarfile.TarInfo | None = None
    targets: dict[str, tarfile.TarInfo] = {}
    declared = 0
    for member in tar:
        if member.issparse() or not member.isreg():
            kind = "a sparse file" if member.issparse() else "not a regular file"
            raise ParError(f"malformed provider archive: entry {member.name!r} is {kind}; an archive holds "
                           "claims.jwt and <target>.bin files only")
        base = member.name.rsplit("/", 1)[-1]
        stem = base.rsplit(".", 1)[0] if "." in base else base
        declared += member.size
        if declared > limit:
            raise ParError(f"malformed provider archive: its entries declare more than {_mib(limit)} "
                           f"(entry {member.name!r} declares {member.size} bytes; WAFT_PAR_MAX_BYTES)")
        if stem == "claims":
            if claims is not None:
                raise ParError("malformed provider archive: it has two claims entries")
            if member.size > max_claims():
                raise ParError(f"malformed provider archive: its claims entry declares {member.size} bytes, "
                               f"over the limit of {max_claims()} (WAFT_PAR_MAX_CLAIMS_BYTES)")
            claims = member
        elif stem in targets:
            raise ParError(f"malformed provider archive: target {stem} appears twice")
        else:
            targets[stem] = member
    if claims is None:
        raise ParError("malformed provider archive: it has no claims.jwt")
    if not targets:
        raise ParError("malformed provider archive: it has no target binaries (<target>.bin entries)")
    return claims, targets


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """A member's bytes, never more than it declared (which `_members` already bounded)."""
    handle = tar.extractfile(member)
    content = handle.read(member.size) if handle else b""
    if len(content) != member.size:
        raise ParError(f"malformed provider archive: entry {member.name} is truncated")
    return content


def load_par(data: bytes, *, verify: bool = True) -> ProviderArchive:
    """Read a .par / .par.gz; with `verify`, check the signature, key roles and every target hash.

    The claims are read and their signature checked before any target is unpacked, so an archive
    nobody trusted costs its headers and its token, not its declared contents."""
    compressed = data[:2] == b"\x1f\x8b"
    limit = max_unpacked()
    raw = _gunzip(data, limit) if compressed else data
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            claims_member, members = _members(tar, limit)
            token = _read(tar, claims_member).decode("utf-8", "replace").strip()
            try:
                claims = jwt.decode(token) if verify else jwt.decode_unverified(token)
            except ClaimsError as exc:
                raise ParError(f"provider archive claims refused: {exc}") from None
            meta = claims.get("wascap")
            if not isinstance(meta, dict) or "capid" not in meta:
                raise ParError("provider archive claims have no wascap provider metadata (capid, target_hashes)")
            targets = {stem: _read(tar, member) for stem, member in members.items()}
    except ParError:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ParError(f"malformed provider archive: not a valid tar{' inside the gzip' if compressed else ''} "
                       f"({exc})") from None
    archive = ProviderArchive(token, claims, targets, compressed, verify, meta)
    if verify:
        _verify(archive)
    return archive


def _check_key(public_key: str, role: Role, what: str) -> None:
    """A real nkeys public key of `role` (prefix, base32, CRC): the service key becomes a directory name."""
    try:
        found, _ = decode_public_key(public_key)
    except KeyError_ as exc:
        raise ParError(f"provider archive {what} {public_key[:12]!r} is not a valid public key ({exc})") from None
    if found is not role:
        raise ParError(f"provider archive {what} {public_key[:8]}… is not a{'n' if role is Role.ACCOUNT else ''} "
                       f"{role.name.lower()} key ({role.letter}…)")


def _check_revision(archive: ProviderArchive) -> int:
    """`rev` and `iat` as wascap writes them: integers; the revision becomes a directory name."""
    for name, value in (("rev", archive.meta.get("rev", 0)), ("iat", archive.claims.get("iat", 0))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ParError(f"provider archive claims have a {name} that is not a non-negative integer: {value!r}")
    return archive.revision


def _verify(archive: ProviderArchive) -> None:
    _check_key(archive.issuer, Role.ACCOUNT, "issuer")
    _check_key(archive.service, Role.SERVICE, "subject")
    _check_revision(archive)
    hashes = archive.meta.get("target_hashes")
    if not isinstance(hashes, dict):
        raise ParError("provider archive claims have no target_hashes")
    for target, data in archive.targets.items():
        expected = hashes.get(target)
        if expected is None:
            raise ParError(f"provider archive target {target} is not covered by the signed target_hashes")
        actual = target_hash(data)
        if str(expected).upper() != actual:
            raise ParError(f"provider archive target {target} hash mismatch: claims say {str(expected)[:12]}…, the "
                           f"binary is {actual[:12]}… (the archive was altered after signing)")


# --------------------------------------------------------------------------------------------- extract
def par_cache_root() -> Path:
    return waft_home() / "cache" / "par"


def extract_python_target(archive: ProviderArchive) -> tuple[Path, str]:
    """Unpack the Python target to the PAR cache (once); return its directory and the module to run."""
    data = archive.targets.get(PYTHON_TARGET)
    if data is None:
        raise ParError(f"provider archive {archive.name or archive.service} has no {PYTHON_TARGET} target "
                       f"(it has {', '.join(sorted(archive.targets))}); Waft runs Python providers only")
    digest = target_hash(data)
    root = par_cache_root().resolve()
    dest = _under(root, root / _service_dir(archive) / str(_check_revision(archive)))
    marker = dest / ".waft-target-sha256"
    if not (marker.is_file() and marker.read_text().strip() == digest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = _under(root, Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-")))
        try:
            _unzip(data, staging)
            (staging / marker.name).write_text(digest + "\n")
            if dest.exists():
                shutil.rmtree(_under(root, dest), ignore_errors=True)
            try:
                os.rename(staging, dest)
            except OSError:  # another host sharing $WAFT_HOME got there first
                if not (marker.is_file() and marker.read_text().strip() == digest):
                    raise
        finally:
            shutil.rmtree(_under(root, staging), ignore_errors=True)
    try:
        module = json.loads((dest / METADATA).read_text())["module"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ParError(f"the {PYTHON_TARGET} target has no valid {METADATA} naming its module") from None
    if not isinstance(module, str) or not module.isidentifier() or not (dest / module).is_dir():
        raise ParError(f"the {PYTHON_TARGET} target names module {module!r}, which it does not contain")
    return dest, module


def _service_dir(archive: ProviderArchive) -> str:
    """The service key, checked again here: an archive loaded unverified never went through `_verify`."""
    _check_key(archive.service, Role.SERVICE, "subject")
    return archive.service


def _under(root: Path, path: Path) -> Path:
    """`path`, resolved, when it lies strictly inside `root`; the PAR cache writes and removes nothing else."""
    resolved = path.resolve()
    if root not in resolved.parents:
        raise ParError(f"refusing to write or remove {path}: it is outside the provider archive cache {root}")
    return resolved


def _unzip(data: bytes, dest: Path) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            total, limit = 0, max_unpacked()
            for info in archive.infolist():
                target = (dest / info.filename).resolve()
                if info.filename.startswith("/") or dest.resolve() not in target.parents:
                    raise ParError(f"the {PYTHON_TARGET} target has an unsafe path {info.filename!r}")
                total += info.file_size
                if total > limit:
                    raise ParError(f"the {PYTHON_TARGET} target unpacks to more than {_mib(limit)} "
                                   "(WAFT_PAR_MAX_BYTES)")
            archive.extractall(dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ParError(f"the {PYTHON_TARGET} target is not a valid zip ({exc})") from None


def provider_spec(archive: ProviderArchive, image_ref: str):  # -> ProviderSpec (imported lazily)
    from waft.host.providers import ProviderSpec

    directory, module = extract_python_target(archive)
    python_path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH", "")]))
    return ProviderSpec(image_ref=image_ref, command=(sys.executable, "-m", module), public_key=archive.service,
                        contract_id=archive.capid, name=archive.name or module,
                        claims={"iss": archive.issuer, "version": archive.ver, "rev": str(archive.rev),
                                "vendor": archive.vendor},
                        env={"PYTHONPATH": python_path})


def read_par_ref(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None,
                 insecure: bool | None = None) -> bytes:
    """The bytes of a PAR named by a file path (`file://` allowed) or an OCI ref."""
    path = Path(ref.removeprefix("file://"))
    with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return path.read_bytes()
    if not _is_oci(ref):
        raise ParError(f"no such provider archive file: {ref}")
    from waft.oci.fetch import fetch_artifact_sync
    from waft.oci.refs import OciRef
    from waft.oci.registry import pull

    if insecure is not None:
        artifact = pull(OciRef.parse(ref), insecure=insecure, allow_latest=allow_latest)
        if artifact.kind != "provider":
            raise ParError(f"{ref} is an actor module, not a provider archive")
        return artifact.data
    return fetch_artifact_sync(ref, allow_latest=allow_latest, allowed_insecure=allowed_insecure,
                               kind="provider").data


def _is_oci(ref: str) -> bool:
    head = ref.removeprefix("oci://").split("/", 1)[0]
    return "/" in ref and (":" in head or "." in head or head == "localhost") and not ref.startswith(("./", "../"))


def resolve_par_provider_sync(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None,
                              trust: TrustPolicy | None = None):
    """The issuer is judged before anything is extracted: an untrusted archive writes nothing to the cache."""
    from waft.host.providers import ProviderStartError

    try:
        archive = load_par(read_par_ref(ref, allow_latest=allow_latest, allowed_insecure=allowed_insecure))
        (trust or TrustPolicy.from_settings()).check(archive.issuer, f"provider archive {archive.name or ref}")
        return provider_spec(archive, ref)
    except (OciError, ClaimsError) as exc:  # ParError and UntrustedIssuer included
        raise ProviderStartError(str(exc)) from None


async def resolve_par_provider(ref: str, *, allow_latest: bool = False, allowed_insecure: list[str] | None = None,
                               trust: TrustPolicy | None = None):
    """A ProviderSpec for the provider archive at `ref` (file or OCI), verified, trusted and extracted."""
    return await asyncio.to_thread(resolve_par_provider_sync, ref, allow_latest=allow_latest,
                                   allowed_insecure=allowed_insecure, trust=trust)
