"""Bindle's file layout, written so that a crash or a failed upload never leaves a half object.

    ROOT/invoices/<sha256 of name/version>/invoice.toml
    ROOT/parcels/<parcel sha256>/parcel.dat   (+ label.toml)

Every file is written to `<file>.part` (created with O_EXCL, which doubles as the "write in progress"
lock), fsynced, then renamed; the rename of `parcel.dat` is the commit point. A parcel directory with
no `parcel.dat` is therefore garbage: `recover()` removes it at startup, along with stale `.part`
files a killed server left behind, and a failed upload removes its own files at once (v0.7.1 left the
directory behind, so a retry got 409 forever). A directory this store creates is fsynced in its parent
before anything is written into it: a renamed file is durable only once the entry of the directory
holding it is too, so without that a crash could keep an invoice whose parcel directory vanished.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import AsyncIterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from waft.bindle.ids import BindleId, check_sha
from waft.bindle.invoice import Invoice, InvoiceError, Label, label_to_dict
from waft.errors import WaftError

log = logging.getLogger(__name__)

PART = ".part"
#: Bytes gathered before one write to disk (writes run in a thread so the event loop never blocks).
WRITE_BATCH = 1 << 20


class StoreError(WaftError):
    """A storage outcome the API maps to a status (v0.7.1's `ProviderError`)."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(StoreError):
    status = 404

    def __init__(self, message: str = "resource not found: if an item does not appear in our records, "
                                      "it does not exist!") -> None:
        super().__init__(message)


class Yanked(StoreError):
    status = 403

    def __init__(self) -> None:
        super().__init__("bindle is yanked")


class CreateYanked(StoreError):
    status = 422

    def __init__(self) -> None:
        super().__init__("bindle cannot be created as yanked")


class Exists(StoreError):
    status = 409

    def __init__(self) -> None:
        super().__init__("resource already exists")


class WriteInProgress(StoreError):
    status = 409

    def __init__(self) -> None:
        super().__init__("a write operation is currently in progress for this resource and it cannot be "
                         "replaced; retry later")


class SizeMismatch(StoreError):
    status = 400


class DigestMismatch(StoreError):
    status = 400


class TooLarge(StoreError):
    status = 413


@dataclass
class Recovery:
    """What `recover()` cleaned up, so the server can log it."""

    removed_parts: int = 0
    removed_dirs: int = 0


class FileStore:
    """Invoices and parcels on disk, plus an in-memory index of every invoice (for search and GET)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.invoices_dir = self.root / "invoices"
        self.parcels_dir = self.root / "parcels"
        make_dirs(self.invoices_dir)
        make_dirs(self.parcels_dir)
        self.index: dict[str, Invoice] = {}

    # -------------------------------------------------------------------------------------- startup
    def recover(self) -> Recovery:
        """Undo what an interrupted write left: run before serving, while no upload can be running."""
        report = Recovery()
        for kind_dir, final_name in ((self.parcels_dir, "parcel.dat"), (self.invoices_dir, "invoice.toml")):
            for entry in sorted(kind_dir.iterdir()):
                if not entry.is_dir():
                    continue
                for part in entry.glob(f"*{PART}"):
                    part.unlink(missing_ok=True)
                    report.removed_parts += 1
                if not (entry / final_name).is_file():
                    shutil.rmtree(entry, ignore_errors=True)
                    report.removed_dirs += 1
        return report

    def load_index(self) -> None:
        """Read every stored invoice; a broken or misplaced one is logged and skipped, never fatal."""
        self.index.clear()
        for path in sorted(self.invoices_dir.glob("*/invoice.toml")):
            try:
                invoice = Invoice.from_toml(path.read_bytes())
            except (InvoiceError, OSError) as exc:
                log.warning("skipping unreadable invoice %s: %s", path, exc)
                continue
            if invoice.id.sha != path.parent.name:
                log.warning("skipping %s: directory name is not the sha256 of %s", path, invoice.id)
                continue
            self.index[str(invoice.id)] = invoice

    # ------------------------------------------------------------------------------------- invoices
    def invoice_file(self, bid: BindleId) -> Path:
        return self.invoices_dir / bid.sha / "invoice.toml"

    def get_invoice(self, bid: BindleId, *, allow_yanked: bool = False) -> Invoice:
        invoice = self.index.get(str(bid))
        if invoice is None:
            raise NotFound()
        if invoice.is_yanked() and not allow_yanked:
            raise Yanked()
        return invoice

    def create_invoice(self, invoice: Invoice) -> list[Label]:
        """Store a new invoice and return the labels whose parcels are not stored yet."""
        if invoice.is_yanked():
            raise CreateYanked()
        path = self.invoice_file(invoice.id)
        if path.exists():
            raise Exists()
        make_dirs(path.parent)
        _write_atomic(path, invoice.to_toml().encode("utf-8"), replace=False)
        self.index[str(invoice.id)] = invoice
        return self.missing(invoice)

    def yank_invoice(self, bid: BindleId) -> Invoice:
        invoice = self.get_invoice(bid, allow_yanked=True).with_changes(yanked=True)
        _write_atomic(self.invoice_file(bid), invoice.to_toml().encode("utf-8"), replace=True)
        self.index[str(bid)] = invoice
        return invoice

    # -------------------------------------------------------------------------------------- parcels
    def parcel_file(self, sha: str) -> Path:
        return self.parcels_dir / check_sha(sha) / "parcel.dat"

    def has_parcel(self, sha: str) -> bool:
        try:
            return self.parcel_file(sha).is_file()
        except ValueError:
            return False

    def missing(self, invoice: Invoice) -> list[Label]:
        return [p.label for p in invoice.parcels if not self.has_parcel(p.label.sha256)]

    async def write_parcel(self, label: Label, chunks: AsyncIterable[bytes], *,
                           max_size: int | None = None) -> None:
        """Stream `chunks` to disk, hashing as they arrive; commit only if size and sha256 match.

        The size is checked before the digest (v0.7.1's order), but as the bytes arrive, so a body
        larger than the label stops being read as soon as it overflows.
        """
        sha = check_sha(label.sha256)
        final = self.parcel_file(sha)
        if final.exists():
            raise Exists()
        directory = final.parent
        make_dirs(directory)
        part = final.with_name(final.name + PART)
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise WriteInProgress() from None
        committed = False
        try:
            with os.fdopen(fd, "wb") as fh:
                digest, size = await _stream_to(fh, chunks, label.size, max_size)
                await asyncio.to_thread(_sync, fh)
            if size != label.size:
                raise SizeMismatch(f"parcel size does not match invoice: the label says {label.size} bytes, "
                                   f"the body had {size}")
            if digest != sha:
                raise DigestMismatch(f"digest does not match: the body hashes to sha256 {digest}, "
                                     f"not {sha}")
            label_file = directory / "label.toml"
            _write_atomic(label_file, tomli_w.dumps(label_to_dict(label)).encode("utf-8"), replace=True)
            if final.exists():  # cannot happen while we hold the .part lock, but never overwrite
                raise Exists()
            os.rename(part, final)
            _fsync_dir(directory)
            committed = True
        finally:
            if not committed:
                part.unlink(missing_ok=True)
                if not final.exists():
                    (directory / "label.toml").unlink(missing_ok=True)
                    _rmdir_quiet(directory)

    def iter_files(self) -> Iterator[Path]:
        """Every file in the store (tests and `info` use it to prove nothing stray was written)."""
        return (p for p in self.root.rglob("*") if p.is_file())


async def _stream_to(fh, chunks: AsyncIterable[bytes], expected: int,
                     max_size: int | None) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    buffer = bytearray()
    async for chunk in chunks:
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise TooLarge(f"parcel body exceeds the server's limit of {max_size} bytes "
                           "(raise it with --max-parcel-size)")
        if size > expected:
            raise SizeMismatch(f"parcel size does not match invoice: the body is larger than the "
                               f"{expected} bytes the label says")
        hasher.update(chunk)
        buffer += chunk
        if len(buffer) >= WRITE_BATCH:
            await asyncio.to_thread(fh.write, bytes(buffer))
            buffer.clear()
    if buffer:
        await asyncio.to_thread(fh.write, bytes(buffer))
    return hasher.hexdigest(), size


def _sync(fh) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _write_atomic(path: Path, data: bytes, *, replace: bool) -> None:
    """Write via an exclusive `.part` then rename; `replace=False` refuses to overwrite (409)."""
    part = path.with_name(path.name + PART)
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise WriteInProgress() from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            _sync(fh)
        if not replace and path.exists():
            raise Exists()
        os.rename(part, path)
        _fsync_dir(path.parent)
    except BaseException:
        part.unlink(missing_ok=True)
        if not replace and not path.exists():
            _rmdir_quiet(path.parent)
        raise


def make_dirs(directory: Path) -> None:
    """`mkdir -p`, fsyncing each directory it creates in its parent, outermost first."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another writer made it: its entry is synced all the same
            path.mkdir()
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmdir_quiet(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass
