"""Where model files come from: a bindle server (as the original) or a local directory of built models.

Both pick parcels from the invoice the same way the original did: the first parcel in group `model`,
the first in `metadata`, and (Waft) the first in `labels` if any. The local source exists so that
development and tests work without a bindle server, and so the loader has one small interface.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from waft.bindle.invoice import Invoice, InvoiceError
from waft.interfaces.mlinference import INVALID_MODEL, ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFiles:
    model: Path
    metadata: dict[str, Any] | None
    labels: list[str] | None
    invoice: Invoice


class SourceUnavailable(ModelError):
    """The source could not be reached or failed on its side (connection refused, timeout, 5xx): worth
    retrying, unlike a missing bindle or a bad parcel."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_MODEL, message)


class ModelSource(Protocol):
    #: Identifies the source in the registry key: the same bindle id from two servers is two models.
    description: str

    async def fetch(self, bindle_id: str) -> ModelFiles: ...


@dataclass(frozen=True)
class Picked:
    model: str  # sha256 of each chosen parcel
    metadata: str | None
    labels: str | None


def pick_parcels(invoice: Invoice) -> Picked:
    def first(group: str) -> str | None:
        for parcel in invoice.parcels:
            if parcel.member_of(group):
                return parcel.label.sha256
        return None

    model = first("model")
    if model is None:
        raise ModelError(INVALID_MODEL, f"bindle {invoice.id}: the invoice must have >0 parcels being member of "
                                        "group 'model'")
    return Picked(model, first("metadata"), first("labels"))


def _metadata(path: Path | None, bindle_id: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ModelError(INVALID_MODEL, f"bindle {bindle_id}: metadata parcel is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(INVALID_MODEL, f"bindle {bindle_id}: metadata parcel must be a JSON object")
    return data


def _labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class InvoiceCache:
    """Invoices this host fetched, one TOML file per bindle id, next to the parcel cache.

    Why: a host whose bindle server is unreachable (a restart, a network split, a second machine whose
    repository is elsewhere) would otherwise fail every model it has already downloaded. A bindle id names
    one invoice for good (bindle never changes a stored invoice), so a cached one is as good as the
    server's, and the parcels it lists are checked against their sha256 when read from the cache."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, bindle_id: str) -> Path:
        import hashlib

        return self.root / f"{hashlib.sha256(bindle_id.encode()).hexdigest()}.toml"

    def put(self, invoice: Invoice) -> None:
        import os
        import uuid

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{uuid.uuid4().hex}.part"
        tmp.write_text(invoice.to_toml(), encoding="utf-8")
        os.replace(tmp, self._path(str(invoice.id)))

    def get(self, bindle_id: str) -> Invoice | None:
        path = self._path(bindle_id)
        try:
            invoice = Invoice.from_toml(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, InvoiceError):
            return None
        return invoice if str(invoice.id) == bindle_id else None


class BindleSource:
    """Fetch invoices and parcels with `waft.bindle.client.BindleClient` (parcels land in its cache); when
    the server cannot be reached, a model whose invoice and parcels are all cached loads from the cache."""

    def __init__(self, url: str | None, cache_dir: Path | None = None) -> None:
        from waft.bindle.cache import default_cache_dir
        from waft.bindle.client import default_url

        self.url = url or default_url()
        self.cache_dir = cache_dir
        self.invoices = InvoiceCache((cache_dir or default_cache_dir()).parent / "invoices")
        self.description = f"bindle {self.url}"

    def _from_cache(self, bindle_id: str, why: str) -> ModelFiles:
        """The model's files from the caches alone, each parcel re-hashed; SourceUnavailable naming `why`
        when anything is missing or no longer matches its sha256."""
        from waft.bindle.cache import ParcelCache

        invoice = self.invoices.get(bindle_id)
        if invoice is None:
            raise SourceUnavailable(f"bindle {bindle_id} from {self.url}: {why} (and it is not cached here)")
        picked = pick_parcels(invoice)
        cache = ParcelCache(self.cache_dir)
        paths = {}
        for sha in (picked.model, picked.metadata, picked.labels):
            if sha is None:
                continue
            path = cache.get(sha)
            if path is None:
                raise SourceUnavailable(f"bindle {bindle_id} from {self.url}: {why} (its parcel {sha} is not "
                                        "cached here, or no longer matches its sha256)")
            paths[sha] = path
        log.warning("bindle %s: %s; loading it from this host's cache (every parcel matched its sha256)",
                    bindle_id, why)
        return ModelFiles(paths[picked.model],
                          _metadata(paths[picked.metadata], bindle_id) if picked.metadata else None,
                          _labels(paths[picked.labels]) if picked.labels else None, invoice)

    async def fetch(self, bindle_id: str) -> ModelFiles:
        from waft.bindle.client import BindleClient, BindleError, InvoiceNotFound, ServerError

        try:
            async with BindleClient(self.url, cache_dir=self.cache_dir) as client:
                invoice = await client.get_invoice(bindle_id)
                picked = pick_parcels(invoice)
                model = await client.get_parcel(bindle_id, picked.model)
                meta = await client.get_parcel(bindle_id, picked.metadata) if picked.metadata else None
                labels = await client.get_parcel(bindle_id, picked.labels) if picked.labels else None
        except InvoiceNotFound:
            raise ModelError(INVALID_MODEL, f"bindle {bindle_id} not found at {self.url}") from None
        except ServerError as exc:
            return await asyncio.to_thread(self._from_cache, bindle_id, str(exc))
        except BindleError as exc:
            raise ModelError(INVALID_MODEL, f"bindle {bindle_id} from {self.url}: {exc}") from None
        await asyncio.to_thread(self.invoices.put, invoice)
        return ModelFiles(model, await asyncio.to_thread(_metadata, meta, bindle_id),
                          await asyncio.to_thread(_labels, labels), invoice)


class DirectorySource:
    """Model folders as `python models/build.py` writes them: `<root>/<route>/invoice.toml` plus each
    parcel under its label name. The folder is found by the invoice's name and version, not its name."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.description = f"dir {self.root.resolve()}"

    def _find(self, bindle_id: str) -> tuple[Path, Invoice]:
        for invoice_file in sorted(self.root.glob("*/invoice.toml")):
            try:
                invoice = Invoice.from_toml(invoice_file.read_text(encoding="utf-8"))
            except (InvoiceError, OSError, UnicodeDecodeError):
                continue
            if str(invoice.id) == bindle_id:
                return invoice_file.parent, invoice
        raise ModelError(INVALID_MODEL, f"bindle {bindle_id} not found under {self.root}")

    def _fetch(self, bindle_id: str) -> ModelFiles:
        folder, invoice = self._find(bindle_id)
        picked = pick_parcels(invoice)

        def path(sha: str | None) -> Path | None:
            if sha is None:
                return None
            label = invoice.label_for(sha)
            assert label is not None
            file = folder / label.name
            if not file.is_file():
                raise ModelError(INVALID_MODEL, f"bindle {bindle_id}: parcel {label.name} missing in {folder}")
            return file

        model = path(picked.model)
        assert model is not None
        return ModelFiles(model, _metadata(path(picked.metadata), bindle_id), _labels(path(picked.labels)), invoice)

    async def fetch(self, bindle_id: str) -> ModelFiles:
        return await asyncio.to_thread(self._fetch, bindle_id)
