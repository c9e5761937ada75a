"""Downloads from a registry that lies about sizes: refused before (or while) reading, never buffered whole.

The registry is the real one (Debian's docker-registry); the lies are manifests pushed to it by hand,
which it stores and serves as any registry would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from waft_testing import docker_registry

from waft.oci import OciError, cache, pull
from waft.oci.registry import ACTOR_CONFIG, ACTOR_LAYER, EMPTY_CONFIG, OCI_MANIFEST, push


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with docker_registry(tmp_path_factory.mktemp("registry")) as address:
            yield address
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def _put_manifest(registry: str, repository: str, tag: str, layer: dict[str, object]) -> None:
    """A manifest whose layer descriptor says what the test wants (the blobs are already there)."""
    config = {"mediaType": ACTOR_CONFIG, "digest": cache.digest_of(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    done = requests.put(f"http://{registry}/v2/{repository}/manifests/{tag}", data=json.dumps(manifest),
                        headers={"Content-Type": OCI_MANIFEST}, timeout=10)
    assert done.status_code == 201, done.text


def _blob(size: int) -> bytes:
    return b"\0asm" + os.urandom(size - 4)


def test_layer_over_the_limit_is_refused_before_download(registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _blob(64 << 10)
    pushed = push(f"{registry}/hostile/big:1", data, kind="actor", insecure=True)
    # Remove the blob: a client that tried to download it would fail on a 404, not on the limit.
    gone = requests.delete(f"http://{registry}/v2/hostile/big/blobs/{pushed['layer_digest']}", timeout=10)
    assert gone.status_code == 202, gone.text
    monkeypatch.setenv("WAFT_OCI_MAX_BLOB_BYTES", str(32 << 10))
    seen: list[int] = []
    with pytest.raises(OciError, match=r"over the limit of 32768 .*WAFT_OCI_MAX_BLOB_BYTES.*before downloading"):
        pull(f"{registry}/hostile/big:1", insecure=True, progress=lambda _label, done, _total: seen.append(done))
    assert seen == [] and not cache.blob_path(pushed["layer_digest"]).exists()


def test_blob_larger_than_declared_is_refused(registry: str) -> None:
    data = _blob(64 << 10)
    pushed = push(f"{registry}/hostile/liar:1", data, kind="actor", insecure=True)
    declared = len(data) - 1024
    _put_manifest(registry, "hostile/liar", "short", {"mediaType": ACTOR_LAYER, "digest": pushed["layer_digest"],
                                                       "size": declared})
    seen: list[int] = []
    with pytest.raises(OciError, match=f"size mismatch .*{declared} bytes"):
        pull(f"{registry}/hostile/liar:short", insecure=True, progress=lambda _label, done, _total: seen.append(done))
    assert max(seen, default=0) <= declared  # reading stopped at the declared size
    assert not cache.blob_path(pushed["layer_digest"]).exists()
    # the honest manifest of the same blob still pulls
    assert pull(f"{registry}/hostile/liar:1", insecure=True).data == data


def test_layer_without_a_size_is_refused(registry: str) -> None:
    pushed = push(f"{registry}/hostile/nosize:1", _blob(4096), kind="actor", insecure=True)
    _put_manifest(registry, "hostile/nosize", "nosize", {"mediaType": ACTOR_LAYER, "digest": pushed["layer_digest"]})
    with pytest.raises(OciError, match="without a valid size"):
        pull(f"{registry}/hostile/nosize:nosize", insecure=True)


def test_manifest_over_its_limit_is_refused(registry: str, monkeypatch: pytest.MonkeyPatch, hostile_home: Path) -> None:
    push(f"{registry}/hostile/manifest:1", _blob(4096), kind="actor", insecure=True)
    monkeypatch.setenv("WAFT_OCI_MAX_MANIFEST_BYTES", "100")
    with pytest.raises(OciError, match=r"manifest .*over the limit of 100 .*WAFT_OCI_MAX_MANIFEST_BYTES"):
        pull(f"{registry}/hostile/manifest:1", insecure=True)
