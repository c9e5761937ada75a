"""Issue 9 part 5b: the limits no other test drives to their edge, each hit and answered with its
documented error. (Which test covers which limit: the limits table in docs/security.md.)

- instances: every instance of an actor busy -> "actor did not answer in time: all instances are busy"
- tensor bytes: a tensor over the mlinference provider's `max_tensor_bytes`, over NATS ->
  corruptInputTensor "... over the limit of N (setting max_tensor_bytes)"
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import nats
import numpy as np
import pytest
from waft_testing import built_actor, running_host

from waft.claims import KeyPair, Role
from waft.host.wapc import Limits
from waft.lattice import LatticeConfig, LatticeRpc, RpcError, WasmCloudEntity
from waft.lattice.codec import pack
from waft.lattice.types import LinkDefinition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mlinference"))
from mlinference_support import MODELS, ensure_models, link_values, ml_client, mlcheck_actor

from waft.interfaces.mlinference import CONTRACT_ID, CORRUPT_INPUT_TENSOR, MODEL_LOADING, predict_request

pytestmark = pytest.mark.timeout(240)
CALLER = WasmCloudEntity.actor("M" + "A" * 55)


async def test_all_instances_busy_is_a_timeout_naming_it(nats_url, lattice_prefix):
    """One instance calls its own actor: the inner call waits for an instance that can only free up when
    it returns, so the pool is exhausted for certain (no race on timing) until the wait gives up."""
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            rpc_timeout_s=0.5, limits=Limits(deadline_ms=500)) as host:
        pool = await host.start_actor(str(built_actor("hostcheck")), 1)
        nc = await nats.connect(nats_url)
        try:
            rpc = LatticeRpc(nc, LatticeConfig(lattice_prefix, cluster, "N" * 56))
            target = WasmCloudEntity.actor(pool.public_key)
            self_call = pack({"binding": "", "namespace": "waft/hostcheck", "operation": "Test.Echo",
                              "payload": b"me again"})
            with pytest.raises(RpcError) as busy:
                await rpc.invoke(CALLER, target, "Test.Call", self_call, timeout=30)
            # the guest read the kind the host named: a timeout
            assert str(busy.value) == "host error: timeout: actor did not answer in time: all instances are busy"
            # the instance was given back: the pool serves again
            assert await rpc.invoke(CALLER, target, "Test.Echo", b"free", timeout=30) == b"free"
            # with a second instance the same call goes through
            await host.start_actor(str(built_actor("hostcheck")), 1)
            assert await rpc.invoke(CALLER, target, "Test.Call", self_call, timeout=30) == b"me again"
        finally:
            await nc.close()


async def test_tensor_over_max_tensor_bytes_is_refused_before_the_data(nats_url, lattice_prefix, tmp_path):
    ensure_models()
    cluster = KeyPair.generate(Role.CLUSTER)
    x4 = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)  # 16 bytes: exactly the limit
    x5 = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], np.float32)  # 20 bytes: over it
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            rpc_timeout_s=20) as host:
        pool = await host.start_actor(mlcheck_actor(tmp_path))
        provider = await host.start_provider("python:waft_mlinference")
        values = link_values({"identity": "identity_model/0.2.0"}, model_dir=MODELS,
                             options={"identity": {"max_tensor_bytes": 16}})
        await host.put_link(LinkDefinition(pool.public_key, provider.public_key, CONTRACT_ID, "default", values))
        async with ml_client(nats_url, lattice_prefix, cluster, pool.public_key) as client:
            out = None
            for _ in range(600):  # until the link has arrived and the model is loaded
                try:
                    out = await client.predict(predict_request("identity", x5), timeout=10)
                except RpcError:
                    await asyncio.sleep(0.1)
                    continue
                if out.error is None or out.error.variant != MODEL_LOADING:
                    break
                await asyncio.sleep(0.1)
            assert out is not None and out.error is not None, out
            assert out.error.variant == CORRUPT_INPUT_TENSOR
            assert "needs 20 bytes, over the limit of 16 (setting max_tensor_bytes)" in out.error.message
            # a tensor at the limit goes through on the same link
            within = await client.predict(predict_request("identity", x4), timeout=10)
            assert within.ok and within.tensor.to_numpy().tolist() == x4.tolist()
