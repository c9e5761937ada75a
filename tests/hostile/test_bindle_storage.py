"""A crash at the wrong moment: every directory the bindle store creates is synced in its parent.

A power cut cannot be staged in a test, so this checks the code path instead: `os.fsync` is wrapped
(the real call still runs) to record which directory each synced descriptor is, read back from
/proc, and the parents of the directories a push creates must be among them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from waft.bindle.invoice import Invoice
from waft.bindle.storage import FileStore

DATA = b"weights of a small model"
SHA = hashlib.sha256(DATA).hexdigest()
INVOICE = "\n".join(['bindleVersion = "1.0.0"', "", "[bindle]", 'name = "durable"', 'version = "1.0.0"', "",
                     "[[parcel]]", f"label.sha256 = '{SHA}'", "label.mediaType = 'application/octet-stream'",
                     "label.name = 'model.onnx'", f"label.size = {len(DATA)}", ""])


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    paths: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)  # fails for a descriptor that is not open: the path below is what was really synced
        paths.append(Path(os.readlink(f"/proc/self/fd/{fd}")))

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


async def _chunks() -> AsyncIterator[bytes]:
    yield DATA


async def test_new_directories_are_synced_in_their_parent(tmp_path: Path, synced: list[Path]) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    assert synced == [tmp_path, root, root]  # store/ in its parent, then invoices/ and parcels/ in store/
    invoice = Invoice.from_toml(INVOICE)
    missing = store.create_invoice(invoice)
    await store.write_parcel(missing[0], _chunks())
    invoice_dir = store.invoice_file(invoice.id).parent
    parcel_dir = store.parcel_file(SHA).parent
    dirs = [p for p in synced if p.is_dir()]
    assert store.invoices_dir in dirs and store.parcels_dir in dirs  # the new entries' parents
    assert invoice_dir in dirs and parcel_dir in dirs  # and the directories holding the renamed files
    # each parent was synced after its child existed, before the child's files were committed
    assert dirs.index(store.parcels_dir, dirs.index(invoice_dir)) < dirs.index(parcel_dir)
    assert store.parcel_file(SHA).read_bytes() == DATA
