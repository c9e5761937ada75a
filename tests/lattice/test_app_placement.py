"""Where `reconcile` starts what a manifest lacks: on the host it is given (what `waft up --app` and
`waft app deploy --host-id` pass), not on whichever host answered the ping first."""

from __future__ import annotations

import pytest
from waft_testing import built_actor, running_host

from waft.app import Manifest, reconcile
from waft.claims import KeyPair, Role
from waft.ctl import CtlClient, CtlError

pytestmark = pytest.mark.timeout(120)


def echo_manifest(count: int) -> Manifest:
    return Manifest.parse({"name": "placed", "actors": [{"name": "echo", "image": str(built_actor("echo")),
                                                         "count": count}]})


async def test_missing_actors_start_on_the_host_named(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    async with running_host(**config) as first, running_host(**config) as second:
        async with CtlClient.connect(nats_url, lattice_prefix, timeout=5) as ctl:
            for target, other in ((second, first), (first, second)):  # each host in turn: not luck
                await reconcile(ctl, echo_manifest(2), host_id=target.host_id)
                assert sum(p.count for p in target.actors.values()) == 2
                assert not other.actors
                await reconcile(ctl, echo_manifest(0))  # scaled to zero where it runs
                assert not target.actors
            with pytest.raises(CtlError) as info:
                await reconcile(ctl, echo_manifest(1), host_id="N" + "Z" * 55)
            assert f"host {'N' + 'Z' * 55} is not on lattice {lattice_prefix!r}" in str(info.value)
            assert first.host_id in str(info.value) and second.host_id in str(info.value)
            assert not first.actors and not second.actors  # the refused deploy started nothing
