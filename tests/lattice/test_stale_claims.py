"""Claims leave the lattice cache when the last host running an actor or provider stops it.

0.x kept them for ever: `get claims` listed, and call aliases resolved to, actors nobody ran. The checks
read the JetStream stream itself (an independent view from any host's copy) as well as the hosts' caches.
"""

from __future__ import annotations

import asyncio
import json

import nats
import nats.js.errors
from waft_testing import built_actor, running_host

from waft.claims import KeyPair, Role, keystore, sign_actor
from waft.lattice import subjects


async def _stored_claims(nc: nats.NATS, prefix: str, public_key: str) -> dict | None:
    """The claims message the stream holds for `public_key`: its JSON, {} for a tombstone, None for none."""
    js = nc.jetstream()
    try:
        msg = await js.get_last_msg(subjects.lattice_cache_stream(prefix),
                                    subjects.lattice_cache(prefix, "claims", public_key))
    except nats.js.errors.NotFoundError:
        return None
    return json.loads(msg.data) if msg.data else {}


async def _until(condition, what: str, limit_s: float = 10.0) -> None:
    """Wait for another host's consumer to deliver; the bound only turns a hang into a failure."""
    async with asyncio.timeout(limit_s):
        while not condition():  # noqa: ASYNC110 (the cache's one on_change hook belongs to its host)
            await asyncio.sleep(0.02)


def _echo(tmp_path, rev: int) -> str:
    module = built_actor("echo", signed=False).read_bytes()
    path = tmp_path / f"echo_rev{rev}_s.wasm"
    path.write_bytes(sign_actor(module, issuer=keystore.load_or_create("account", Role.ACCOUNT),
                                subject=keystore.load_or_create("stale_claims_module", Role.MODULE),
                                name="echo", caps=["wasmcloud:httpserver"], rev=rev, call_alias="stale/echo"))
    return str(path)


async def test_claims_go_when_the_last_host_stops_the_actor(nats_url, lattice_prefix, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    nc = await nats.connect(nats_url)
    try:
        async with running_host(**config) as first, running_host(**config) as second:
            ref = _echo(tmp_path, 1)
            pool = await first.start_actor(ref)
            await second.start_actor(ref)
            key = pool.public_key
            assert (await _stored_claims(nc, lattice_prefix, key))["rev"] == "1"

            await first.stop_actor(key)  # the second host still runs it: the claims stay
            assert (await _stored_claims(nc, lattice_prefix, key))["rev"] == "1"
            assert key in first.cache.claims and key in second.cache.claims

            await second.stop_actor(key)  # the last one: a tombstone, seen by every host
            assert await _stored_claims(nc, lattice_prefix, key) == {}
            assert key not in second.cache.claims
            await _until(lambda: key not in first.cache.claims, "the first host to see the tombstone")
            assert first.cache.alias_owners("stale/echo") == []

            # a new revision supersedes the old claims in place: one message for the subject
            await first.start_actor(_echo(tmp_path, 2))
            assert (await _stored_claims(nc, lattice_prefix, key))["rev"] == "2"
            await _until(lambda: second.cache.claims.get(key, {}).get("rev") == "2", "rev 2 on the second host")
            subject = subjects.lattice_cache(lattice_prefix, "claims", key)
            info = await nc.jetstream().stream_info(subjects.lattice_cache_stream(lattice_prefix),
                                                    subjects_filter=subject)
            assert info.state.subjects == {subject: 1}
        # both hosts stopped cleanly (rev 2 ran on one): what a newcomer would load is the tombstone
        assert await _stored_claims(nc, lattice_prefix, key) == {}
    finally:
        await nc.close()


async def test_provider_claims_go_with_its_last_instance(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    nc = await nats.connect(nats_url)
    try:
        async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
            first = await host.start_provider("python:echo_provider", "one")
            await host.start_provider("python:echo_provider", "two")
            key = first.public_key
            assert (await _stored_claims(nc, lattice_prefix, key))["sub"] == key
            await host.stop_provider(key, "one")  # the other link name still runs on this host
            assert (await _stored_claims(nc, lattice_prefix, key))["sub"] == key
            await host.stop_provider(key, "two")
            assert await _stored_claims(nc, lattice_prefix, key) == {}
            assert key not in host.cache.claims
    finally:
        await nc.close()
