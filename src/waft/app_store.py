"""Which applications a lattice knows: a JetStream key-value bucket, one key per app, as wadm keeps them.

It lives on the lattice, not on one machine, so any CLI or dashboard that reaches NATS sees the same
list, and a restarted host finds it again. Each record holds every version put (`waft app put`, as
`wash app put`), each as the wadm manifest it became, and which version is deployed, so `deploy NAME
VERSION`, `get`, `history` and `undeploy NAME` need no file. Updates compare the revision they read,
so two CLIs putting at once cannot lose each other's version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from waft.app import Manifest, ManifestError
from waft.errors import WaftError


class AppStoreError(WaftError):
    """An app or version that is not stored, or a change the store refuses; the message says which."""


def bucket_name(prefix: str) -> str:
    return f"waft_apps_{prefix}"


Record = dict[str, Any]


def _upgrade(record: Record) -> Record:
    """A record written before versions were kept ({name, version, source}) as a one-version record."""
    if "versions" in record:
        return record
    version = str(record.get("version") or "0.0.0")
    return {"name": record.get("name", ""), "deployed": version,
            "versions": [{"version": version, "source": record.get("source"), "manifest": None, "put_at": None}]}


def manifest_of(record: Record, version: str | None = None) -> Manifest:
    """The stored manifest of `version` (default: the deployed one, else the latest put)."""
    entry = version_entry(record, version or record.get("deployed"))
    if entry["manifest"] is None:  # an old record: only the file's path was kept
        from pathlib import Path

        return Manifest.load(Path(entry["source"]))
    try:
        return Manifest.parse(entry["manifest"])
    except ManifestError as exc:
        raise AppStoreError(f"stored manifest {record['name']} {entry['version']} is unreadable: {exc}") from None


def version_entry(record: Record, version: str | None) -> dict[str, Any]:
    versions = record["versions"]
    if version is None:
        return versions[-1]
    for entry in versions:
        if entry["version"] == version:
            return entry
    raise AppStoreError(f"application {record['name']!r} has no version {version!r} "
                        f"(stored: {', '.join(e['version'] for e in versions)})")


class AppStore:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, nc: NATS, prefix: str) -> AppStore:
        """The lattice's bucket, created on first use."""
        from waft.lattice.replication import open_replicated_kv

        return cls(await open_replicated_kv(nc, bucket_name(prefix), history=1))

    async def get(self, name: str) -> Record | None:
        try:
            entry = await self.kv.get(name)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return _upgrade(json.loads(entry.value or b"{}"))

    async def require(self, name: str) -> Record:
        record = await self.get(name)
        if record is None:
            raise AppStoreError(f"no application {name!r} is stored on this lattice (`waft app list`)")
        return record

    async def _change(self, name: str, change: Callable[[Record | None], Record | None]) -> Record | None:
        """Apply `change` to the current record and write it back if nobody wrote in between (else retry).

        `change` returns the new record, or None to delete the key."""
        for _ in range(20):
            try:
                entry = await self.kv.get(name)
                current, revision = _upgrade(json.loads(entry.value or b"{}")), entry.revision
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                current, revision = None, None
            updated = change(current)
            try:
                if updated is None:
                    if current is not None:
                        await self.kv.delete(name, last=revision)
                elif revision is None:
                    await self.kv.create(name, json.dumps(updated).encode())
                else:
                    await self.kv.update(name, json.dumps(updated).encode(), last=revision)
                return updated
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
        raise AppStoreError(f"application {name!r} kept changing under this update; try again")

    async def put(self, manifest: Manifest, *, source: str | None = None, replace: bool = False) -> str:
        """Store `manifest` as a version of its app: "stored", "unchanged" (the same manifest again), or
        "replaced" (`replace`: a changed manifest under a version already stored, what `deploy FILE` does).

        Without `replace` a changed manifest under an existing version is refused, as wadm refuses it:
        a version names one manifest, or `deploy NAME VERSION` would not mean what it meant."""
        oam = manifest.to_oam()
        outcome = "stored"

        def change(record: Record | None) -> Record:
            nonlocal outcome
            record = record or {"name": manifest.name, "deployed": None, "versions": []}
            entry = {"version": manifest.version, "manifest": oam, "source": source, "put_at": time.time()}
            for i, old in enumerate(record["versions"]):
                if old["version"] != manifest.version:
                    continue
                if old["manifest"] == oam:
                    outcome = "unchanged"
                    return record
                if not replace:
                    raise AppStoreError(f"{manifest.name} version {manifest.version} is already stored with a "
                                        "different manifest: give the new one another version")
                outcome = "replaced"
                record["versions"][i] = entry
                return record
            record["versions"].append(entry)
            return record

        await self._change(manifest.name, change)
        return outcome

    async def set_deployed(self, name: str, version: str | None) -> None:
        def change(record: Record | None) -> Record:
            if record is None:
                raise AppStoreError(f"no application {name!r} is stored on this lattice")
            if version is not None:
                version_entry(record, version)
            return {**record, "deployed": version}

        await self._change(name, change)

    async def delete(self, name: str, version: str | None = None) -> bool:
        """Forget one version of `name`, or all of them; False when there was nothing to forget.

        A deployed version is refused: deleting it would leave the lattice running an app nobody can
        name any more (`undeploy` it first)."""
        found = False

        def change(record: Record | None) -> Record | None:
            nonlocal found
            if record is None:
                return None
            deployed = record.get("deployed")
            if deployed is not None and version in (None, deployed):
                raise AppStoreError(f"{name} version {deployed} is deployed: `waft app undeploy {name}` first")
            if version is None:
                found = True
                return None
            kept = [e for e in record["versions"] if e["version"] != version]
            found = len(kept) != len(record["versions"])
            return {**record, "versions": kept} if kept else None

        await self._change(name, change)
        return found

    async def list(self) -> list[Record]:
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        records = [await self.get(key) for key in sorted(keys)]
        return [r for r in records if r is not None]

