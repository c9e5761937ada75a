"""The standalone bindle layout `bindle push -p` reads and `bindle get -e` writes:

    DIR/<sha256 of name/version>/invoice.toml
    DIR/<sha256 of name/version>/parcels/<parcel sha256>.dat

Kept byte-compatible with v0.7.1 so bindles exported by either tool can be pushed by the other.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from waft.bindle.ids import BindleId, check_sha
from waft.bindle.invoice import Invoice


def bindle_dir(root: Path, bid: BindleId) -> Path:
    return Path(root) / bid.sha


def read(root: Path, bid: BindleId) -> tuple[Invoice, dict[str, Path]]:
    """The invoice and the parcel files present (sha -> path); absent parcels are simply not listed."""
    base = bindle_dir(root, bid)
    invoice_path = base / "invoice.toml"
    if not invoice_path.is_file():
        raise FileNotFoundError(f"no standalone bindle {bid} at {base} (expected {invoice_path})")
    invoice = Invoice.from_toml(invoice_path.read_bytes())
    parcels = {}
    for label in (p.label for p in invoice.parcels):
        candidate = base / "parcels" / f"{check_sha(label.sha256)}.dat"
        if candidate.is_file():
            parcels[label.sha256] = candidate
    return invoice, parcels


def write(root: Path, invoice: Invoice, parcels: dict[str, Path]) -> Path:
    """Export: copies each cached parcel file next to the invoice."""
    base = bindle_dir(root, invoice.id)
    (base / "parcels").mkdir(parents=True, exist_ok=True)
    (base / "invoice.toml").write_text(invoice.to_toml(), "utf-8")
    for sha, source in parcels.items():
        shutil.copyfile(source, base / "parcels" / f"{check_sha(sha)}.dat")
    return base
