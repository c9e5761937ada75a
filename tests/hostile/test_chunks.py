"""The object store of chunked payloads, against a real nats-server: forged names, payloads left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

from waft.claims import KeyPair, Role
from waft.lattice.chunking import ChunkStore
from waft.lattice.rpc import InvocationRejected, LatticeConfig, LatticeRpc
from waft.lattice.signing import sign_invocation
from waft.lattice.types import Invocation, WasmCloudEntity

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: a payload a sender would have chunked


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    connection = await nats.connect(nats_url)
    try:
        yield connection
    finally:
        await connection.close()


def _chunked(cluster_key: KeyPair) -> Invocation:
    """An invocation whose payload went to object store, signed as `invoke` signs it."""
    invocation = Invocation(origin=WasmCloudEntity.provider("V" + "A" * 55, "wasmcloud:httpserver", "default"),
                            target=WasmCloudEntity.actor("M" + "A" * 55), operation="HttpServer.HandleRequest",
                            msg=PAYLOAD, host_id="N" + "A" * 55)
    sign_invocation(invocation, cluster_key, payload=PAYLOAD)
    invocation.msg, invocation.content_length = b"", len(PAYLOAD)
    return invocation


async def test_forged_invocation_cannot_delete_a_payload(nc: NATS, lattice_prefix: str) -> None:
    cluster = KeyPair.generate(Role.CLUSTER)
    receiver = LatticeRpc(nc, LatticeConfig(lattice_prefix, cluster, "N" + "B" * 55))
    genuine = _chunked(cluster)
    await receiver.chunks.put(genuine.id, PAYLOAD)

    # The same id, signed by a key of no cluster of this lattice, and unsigned altogether.
    forged = _chunked(KeyPair.generate(Role.CLUSTER))
    forged.id = genuine.id
    unsigned = _chunked(cluster)
    unsigned.id, unsigned.encoded_claims = genuine.id, ""
    store = await nc.jetstream().object_store(lattice_prefix)
    for hostile in (forged, unsigned):
        with pytest.raises(InvocationRejected):
            await receiver.receive(hostile.encode())
        assert (await store.get(genuine.id)).data == PAYLOAD  # still there

    received = await receiver.receive(genuine.encode())
    assert received.msg == PAYLOAD
    with pytest.raises(InvocationRejected, match="missing"):  # the genuine one consumed it
        await receiver.receive(genuine.encode())


async def test_bucket_has_a_ttl(nc: NATS, lattice_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    js = nc.jetstream()
    await ChunkStore(nc, lattice_prefix).put("a", b"x")
    assert (await js.stream_info(f"OBJ_{lattice_prefix}")).config.max_age == 600

    # A bucket made without a TTL (an older host, another tool) gets one when it is opened.
    bare = lattice_prefix + "bare"
    await js.create_object_store(bare)
    assert not (await js.stream_info(f"OBJ_{bare}")).config.max_age
    monkeypatch.setenv("WAFT_CHUNK_TTL_S", "120")
    await ChunkStore(nc, bare).put("a", b"x")
    assert (await js.stream_info(f"OBJ_{bare}")).config.max_age == 120
    for bucket in (lattice_prefix, bare):
        await js.delete_object_store(bucket)
