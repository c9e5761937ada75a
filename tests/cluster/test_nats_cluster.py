"""A NATS cluster as `waft up --cluster-listen` makes one: three real nats-servers on 127.0.0.2-4.

Membership (routes that need the password derived from the host key), client authorization on every
member, the lattice's JetStream state kept with three replicas (and brought up to three when an older
copy had one), one replica on a lone server, and leaf-node mode against a hub that only admits the
lattice's nkey.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import nats
import nats.errors
import pytest

from tools.chaos_cluster import NatsCluster, free_port_on, member_address, replicas_of, write_credentials
from waft.embedded_nats import ClusterOptions, EmbeddedNats, LeafRemote
from waft.lattice import subjects
from waft.lattice.connection import server_caught_up
from waft.lattice.credentials import authorization_config, route_credentials

pytestmark = pytest.mark.timeout(120)


def _loopback_aliases_work() -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((member_address(2), 0))
    except OSError:
        return False
    return True


if not _loopback_aliases_work():  # pragma: no cover - Linux routes all of 127/8 to lo
    pytest.skip("127.0.0.2-4 cannot be bound here", allow_module_level=True)


@pytest.fixture
def cluster(tmp_path: Path) -> NatsCluster:
    with NatsCluster(tmp_path).running() as running:
        asyncio.run(running.wait_jetstream())
        yield running


async def test_members_route_to_each_other_and_refuse_anonymous_clients(cluster: NatsCluster) -> None:
    for index in range(3):
        assert await asyncio.to_thread(cluster.routes_of, index) == 2
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(cluster.members[index].server.public_url, connect_timeout=2,
                               allow_reconnect=False, max_reconnect_attempts=1)
    # a message published on one member reaches a subscriber on another: one subject space
    first, last = await cluster.connect(0), await cluster.connect(2)
    try:
        sub = await last.subscribe("probe.hello")
        await server_caught_up(last)
        await asyncio.sleep(0)  # interest travels over the route with the flush above
        for _ in range(50):
            await first.publish("probe.hello", b"across")
            try:
                msg = await sub.next_msg(timeout=0.2)
                break
            except nats.errors.TimeoutError:
                continue
        assert msg.data == b"across"
    finally:
        await first.close()
        await last.close()


def test_a_member_with_the_wrong_route_password_is_not_let_in(cluster: NatsCluster, tmp_path: Path) -> None:
    assert cluster.credentials is not None
    address = member_address(3)
    port = free_port_on(address)
    routes = (*cluster.routes(), f"nats-route://{address}:{port}")
    intruder = EmbeddedNats(tmp_path / "intruder", host=address, server_name="intruder", monitor_port=-1,
                            cluster=ClusterOptions("waft", f"{address}:{port}", routes, ("waft-route", "guessed")),
                            authorization=authorization_config(cluster.credentials, ["default"]))
    with intruder:
        logs = [m.server.data_dir / "nats.log" for m in cluster.members]
        while not any("authentication error" in log.read_text(errors="replace") for log in logs):
            time.sleep(0.05)  # until a member has refused its route; bounded by the test's timeout
        assert all(cluster.routes_of(i) == 2 for i in range(3))


async def test_lattice_state_has_three_replicas_and_old_single_copies_are_raised(cluster: NatsCluster) -> None:
    from waft.app_store import AppStore, bucket_name
    from waft.host.lattice_cache import LatticeCache
    from waft.lattice.chunking import ChunkStore

    nc = await cluster.connect(1)
    try:
        js = nc.jetstream()
        # what an older Waft (or one started while the cluster had one member) left: single copies
        await js.create_key_value(bucket=bucket_name("default"), history=1, replicas=1)
        await js.add_stream(name=subjects.lattice_cache_stream("default"),
                            subjects=[subjects.lattice_cache("default", ">")], max_msgs_per_subject=1,
                            num_replicas=1)
        assert set((await replicas_of(nc)).values()) == {1}
        cache = LatticeCache(nc, "default")
        await cache.start()
        await cache.stop()
        await AppStore.open(nc, "default")
        chunks = ChunkStore(nc, "default")
        await chunks.put("probe", b"x" * 100)
        assert await replicas_of(nc) == {subjects.lattice_cache_stream("default"): 3,
                                         f"KV_{bucket_name('default')}": 3,
                                         f"OBJ_{subjects.object_store_bucket('default')}": 3}
        # the copies exist, not only the setting: two current followers besides the leader (once placed)
        for stream in await replicas_of(nc):
            while True:
                info = await js.stream_info(stream)
                followers = info.cluster.replicas or [] if info.cluster else []
                if len(followers) == 2 and all(p.current for p in followers):
                    break
                await asyncio.sleep(0.1)  # bounded by the test's timeout
    finally:
        await nc.close()


async def test_a_lone_server_keeps_one_replica(tmp_path: Path) -> None:
    from waft.app_store import AppStore, bucket_name

    async with EmbeddedNats(tmp_path / "alone") as server:
        nc = await nats.connect(server.url)
        try:
            await AppStore.open(nc, "default")
            info = await nc.jetstream().stream_info(f"KV_{bucket_name('default')}")
            assert info.config.num_replicas == 1
        finally:
            await nc.close()


async def test_a_leaf_node_joins_a_hub_with_the_lattice_key(tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "home")
    leaf_port = free_port_on("127.0.0.1")
    hub = EmbeddedNats(tmp_path / "hub", authorization=authorization_config(creds, ["default"]),
                       leaf_listen=f"127.0.0.1:{leaf_port}", leaf_user=creds.host.public_key)
    seed_file = tmp_path / "home" / "keys" / "nats_host.nk"
    leaf = EmbeddedNats(tmp_path / "leaf", leaf=LeafRemote(f"nats-leaf://127.0.0.1:{leaf_port}", seed_file))
    async with hub, leaf:
        on_hub = await nats.connect(hub.url, nkeys_seed_str=creds.host.seed)
        on_leaf = await nats.connect(leaf.url)
        try:
            sub = await on_hub.subscribe("probe.leaf")
            await server_caught_up(on_hub)
            msg = None
            for _ in range(100):  # until the leaf connection is up and has the hub's interest
                await on_leaf.publish("probe.leaf", b"from the leaf")
                try:
                    msg = await sub.next_msg(timeout=0.1)
                    break
                except nats.errors.TimeoutError:
                    continue
            assert msg is not None and msg.data == b"from the leaf"
        finally:
            await on_hub.close()
            await on_leaf.close()
    # a leaf with another key is refused by the hub, which then holds no leaf connection
    from waft.claims.keys import KeyPair, Role

    stranger = tmp_path / "stranger.nk"
    stranger.write_text(KeyPair.generate(Role.USER).seed + "\n")
    hub.monitor_port = -1
    async with hub, EmbeddedNats(tmp_path / "leaf2", leaf=LeafRemote(f"nats-leaf://127.0.0.1:{leaf_port}", stranger)):
        hub_log = tmp_path / "hub" / "nats.log"
        offset = len(hub_log.read_bytes())
        await asyncio.to_thread(_wait_for_line, hub_log, "authentication error", offset)
        assert await asyncio.to_thread(_leafnodes, hub.monitor_url) == 0


def _wait_for_line(log: Path, text: str, offset: int = 0) -> None:
    """Until `text` is in the log past `offset`; bounded by the test's timeout, never by a clock here."""
    while text not in log.read_bytes()[offset:].decode(errors="replace"):
        time.sleep(0.05)


def _leafnodes(monitor_url: str) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{monitor_url}/leafz", timeout=5) as response:
        return int(json.loads(response.read())["leafnodes"])


def test_route_credentials_are_shared_by_members_with_the_same_keys(tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "a")
    again = route_credentials(creds)
    assert route_credentials(creds) == again and again[0] == "waft-route" and len(again[1]) == 64
    other = write_credentials(tmp_path / "b")
    assert route_credentials(other) != again
