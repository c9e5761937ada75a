"""Claims leave the lattice cache when the last host running an actor or provider stops it, or dies.

0.x kept them for ever: `get claims` listed, and call aliases resolved to, actors nobody ran (and a new
actor could not take the alias). The checks read the JetStream stream itself (an independent view from any
host's copy) as well as the hosts' caches. The killed host is a real `waft host` process, SIGKILLed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import nats
import nats.js.errors
import pytest
from waft_testing import built_actor, running_host

from waft.claims import KeyPair, Role, keystore, sign_actor
from waft.ctl import CtlClient
from waft.host.host import StartError
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


def _echo(tmp_path, rev: int, module_key: str = "stale_claims_module", alias: str = "stale/echo") -> str:
    module = built_actor("echo", signed=False).read_bytes()
    path = tmp_path / f"echo_{module_key}_rev{rev}_s.wasm"
    path.write_bytes(sign_actor(module, issuer=keystore.load_or_create("account", Role.ACCOUNT),
                                subject=keystore.load_or_create(module_key, Role.MODULE),
                                name="echo", caps=["wasmcloud:httpserver"], rev=rev, call_alias=alias))
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


HEARTBEAT_S = 0.3


async def test_a_sigkilled_hosts_claims_go_after_missed_heartbeats(nats_url, lattice_prefix, tmp_path):
    """A killed host never releases what it ran; the live host sweeps it once its presence has not been renewed
    for `stale_heartbeats` intervals, while the live host's own claims (renewed each heartbeat) stay."""
    nc = await nats.connect(nats_url)
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waft", "host", "--nats-url", nats_url, "--lattice-prefix", lattice_prefix,
        stdout=asyncio.subprocess.PIPE, start_new_session=True,
        env={**os.environ, "WAFT_HEARTBEAT_INTERVAL_MS": str(int(HEARTBEAT_S * 1000)), "WAFT_RECONCILER": "0"})
    try:
        async with running_host(nats_url=nats_url, prefix=lattice_prefix, heartbeat_interval_s=HEARTBEAT_S,
                                stale_heartbeats=3, reconciler=False) as live:
            assert victim.stdout is not None
            line = (await asyncio.wait_for(victim.stdout.readline(), 60)).decode()
            assert line.startswith("host "), line
            victim_id = line.split()[1]
            own = (await live.start_actor(_echo(tmp_path, 1, "stale_live_module", "stale/live"))).public_key
            async with CtlClient.connect(nats_url, lattice_prefix, timeout=10) as ctl:
                await ctl.start_actor(victim_id, _echo(tmp_path, 1))
            key = keystore.load_or_create("stale_claims_module", Role.MODULE).public_key
            await _until(lambda: live.cache.claims.get(key, {}).get("call_alias") == "stale/echo",
                         "the victim's claims reaching the live host", 30)
            refused = _echo(tmp_path, 1, "stale_newcomer_module")  # same alias, another actor
            with pytest.raises(StartError, match="already claimed"):
                await live.start_actor(refused)

            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            killed = time.monotonic()
            await _until(lambda: key not in live.cache.claims, "the swept claims", 30)
            print(f"claims of the SIGKILLed host gone after {time.monotonic() - killed:.1f} s")
            assert await _stored_claims(nc, lattice_prefix, key) == {}  # a tombstone in the stream itself
            running = subjects.lattice_cache(lattice_prefix, "running", key, victim_id)
            info = await nc.jetstream().stream_info(subjects.lattice_cache_stream(lattice_prefix),
                                                    subjects_filter=running)
            assert not info.state.subjects, info.state.subjects
            # the live host's claims were renewed the whole time (more than 3 of its intervals passed)
            assert (await _stored_claims(nc, lattice_prefix, own))["call_alias"] == "stale/live"
            assert own in live.cache.claims
            # and the alias the dead host held is free again
            pool = await live.start_actor(refused)
            assert live.cache.alias_owners("stale/echo") == [pool.public_key]
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
        await nc.close()


async def test_a_sweep_needs_the_missed_heartbeats_and_a_renewal_restores_claims(nats_url, lattice_prefix,
                                                                                   tmp_path):
    """A host frozen past the limit loses its claims to a sweep and puts them back at its next heartbeat;
    with a larger `stale_heartbeats` the same silence is not yet stale, and a renewal the sweeper's consumer
    missed is found at the server before anything is swept."""
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, heartbeat_interval_s=3600) as quiet, \
            running_host(nats_url=nats_url, prefix=lattice_prefix, heartbeat_interval_s=3600) as sweeper:
        key = (await quiet.start_actor(_echo(tmp_path, 1))).public_key
        await _until(lambda: (key, quiet.host_id) in sweeper.cache.presence, "the presence entry arriving")
        seen, every, seq = sweeper.cache.presence[(key, quiet.host_id)]
        assert every == 3600 and seq > 0
        assert await sweeper.cache.sweep(sweeper.host_id, 3) == []  # just seen: not stale
        # a renewal this host's consumer missed (as while a cluster changes): the server's newer message wins
        await quiet._renew_presence()
        sweeper.cache.presence[(key, quiet.host_id)] = (seen - 10 * every, every, seq)
        assert await sweeper.cache.sweep(sweeper.host_id, 3) == []
        seen, every, renewed = sweeper.cache.presence[(key, quiet.host_id)]
        assert renewed > seq
        sweeper.cache.presence[(key, quiet.host_id)] = (seen - 2.5 * every, every, renewed)  # 2.5 intervals on
        assert await sweeper.cache.sweep(sweeper.host_id, 3) == []
        assert await sweeper.cache.sweep(sweeper.host_id, 2) == [(key, quiet.host_id)]
        nc = await nats.connect(nats_url)
        try:
            assert await _stored_claims(nc, lattice_prefix, key) == {}
            await _until(lambda: key not in quiet.cache.claims, "the tombstone reaching the frozen host")
            await quiet._renew_presence()  # what its next heartbeat does
            assert (await _stored_claims(nc, lattice_prefix, key))["call_alias"] == "stale/echo"
            await _until(lambda: key in sweeper.cache.claims, "the renewed claims reaching the sweeper")
        finally:
            await nc.close()
