"""Issue 2 acceptance: the host against a real nats-server, with real signed wasm actors."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import struct
from collections import Counter

import msgpack
import nats
import pytest
from waft_testing import built_actor, running_host, trusted_account

from waft.claims import KeyPair, Role, sign_actor
from waft.ctl import CtlClient, CtlError, wait_for_event
from waft.host.host import StartError
from waft.lattice import LatticeConfig, LatticeRpc, RpcError, WasmCloudEntity
from waft.lattice.codec import pack
from waft.lattice.types import Invocation, InvocationResponse, LinkDefinition

CALLER = WasmCloudEntity.actor("M" + "A" * 55)
HTTP_ORIGIN_CONTRACT = "wasmcloud:httpserver"
pytestmark = pytest.mark.timeout(120)


def http_request(method: str = "GET", path: str = "/", body: bytes = b"", query: str = "",
                 header: dict[str, list[str]] | None = None) -> bytes:
    return pack({"method": method, "path": path, "queryString": query, "header": header or {}, "body": body})


async def lattice_client(url: str, prefix: str, cluster: KeyPair):
    nc = await nats.connect(url)
    return nc, LatticeRpc(nc, LatticeConfig(prefix, cluster, "N" * 56))


def resign(path, tmp_path, *, caps, name="variant", **kwargs) -> str:
    """Sign the unsigned build of an actor with other claims (for the refusal tests)."""
    module = built_actor(path, signed=False).read_bytes()
    signed = sign_actor(module, issuer=kwargs.pop("issuer", trusted_account()),
                        subject=kwargs.pop("subject", KeyPair.generate(Role.MODULE)), name=name, caps=caps, **kwargs)
    out = tmp_path / f"{name}_s.wasm"
    out.write_bytes(signed)
    return str(out)


async def test_echo_actor_answers_on_its_subject(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        pool = await host.start_actor(str(built_actor("echo")))
        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        try:
            origin = WasmCloudEntity.provider("V" + "B" * 55, HTTP_ORIGIN_CONTRACT, "default")
            body = bytes(range(256)) * 4
            answer = await rpc.invoke(origin, WasmCloudEntity.actor(pool.public_key), "HttpServer.HandleRequest",
                                      http_request("POST", "/a/b", body, "x=1&y=%20", {"X-Multi": ["1", "2"]}))
            response = msgpack.unpackb(answer, raw=False)
            assert response["statusCode"] == 200
            echoed = json.loads(response["body"])
            assert echoed["method"] == "POST" and echoed["path"] == "/a/b" and echoed["queryString"] == "x=1&y=%20"
            assert echoed["header"]["X-Multi"] == ["1", "2"]
            assert base64.b64decode(echoed["body"]) == body
        finally:
            await nc.close()


async def test_two_hosts_share_the_load(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    config = dict(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed)
    async with running_host(**config) as first, running_host(**config) as second:
        echo = str(built_actor("echo"))
        pool_a = await first.start_actor(echo, 2)
        pool_b = await second.start_actor(echo, 2)
        owner = {i.instance_id: "a" for i in pool_a.instances} | {i.instance_id: "b" for i in pool_b.instances}
        nc, _ = await lattice_client(nats_url, lattice_prefix, cluster)
        try:
            origin = WasmCloudEntity.provider("V" + "B" * 55, HTTP_ORIGIN_CONTRACT, "default")
            served: Counter[str] = Counter()

            async def one(i: int) -> None:
                inv = Invocation(origin=origin, target=WasmCloudEntity.actor(pool_a.public_key),
                                 operation="HttpServer.HandleRequest", msg=http_request(path=f"/{i}"))
                from waft.lattice.signing import sign_invocation

                sign_invocation(inv, cluster)
                reply = await nc.request(f"wasmbus.rpc.{lattice_prefix}.{pool_a.public_key}", inv.encode(), timeout=10)
                response = InvocationResponse.decode(reply.data)
                assert response.error is None
                assert json.loads(msgpack.unpackb(response.msg)["body"])["path"] == f"/{i}"
                served[owner[response.instance_id or ""]] += 1

            for batch in range(0, 200, 20):
                await asyncio.gather(*(one(i) for i in range(batch, batch + 20)))
            assert sum(served.values()) == 200
            assert served["a"] > 20 and served["b"] > 20, served
        finally:
            await nc.close()


async def test_provider_link_calls_and_restart_after_sigkill(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        pool = await host.start_actor(str(built_actor("hostcheck")))
        provider = await host.start_provider("python:waft_testprovider")
        await host.put_link(LinkDefinition(pool.public_key, provider.public_key, "waft:test", "default",
                                           {"greeting": "hello"}))
        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        try:
            call = pack({"binding": "default", "namespace": "waft:test", "operation": "Test.LinkValues",
                         "payload": b""})

            async def link_values() -> dict:
                for _ in range(100):
                    try:
                        answer = await rpc.invoke(CALLER, WasmCloudEntity.actor(pool.public_key), "Test.Call", call,
                                                  timeout=5)
                        return msgpack.unpackb(answer, raw=False)
                    except RpcError:
                        await asyncio.sleep(0.1)
                raise AssertionError("provider never answered")

            first = await link_values()
            assert first["greeting"] == "hello"
            assert int(first["pid"]) == provider.process.pid
            os.kill(provider.process.pid, signal.SIGKILL)
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            while True:  # poll until the restarted provider answers with its restored link
                try:
                    answer = await rpc.invoke(CALLER, WasmCloudEntity.actor(pool.public_key), "Test.Call", call,
                                              timeout=1)
                    again = msgpack.unpackb(answer, raw=False)
                    break
                except RpcError:
                    assert loop.time() - killed_at < 5, "provider not back within 5 s"
                    await asyncio.sleep(0.05)
            assert again["greeting"] == "hello" and again["pid"] != first["pid"]
            assert loop.time() - killed_at < 5
            assert provider.restarts == 1
        finally:
            await nc.close()


async def test_refusals_leave_the_host_serving(nats_url, lattice_prefix, tmp_path):
    cluster = KeyPair.generate(Role.CLUSTER)
    trusted = trusted_account()
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            allowed_issuers=[trusted.public_key]) as host:
        good = await host.start_actor(resign("hostcheck", tmp_path, caps=["wasmcloud:builtin:logging"],
                                             name="nocap", issuer=trusted))
        # unsigned
        with pytest.raises(StartError, match="unsigned"):
            await host.start_actor(str(built_actor("hostcheck", signed=False)))
        # one byte changed after signing
        tampered = bytearray((tmp_path / "nocap_s.wasm").read_bytes())
        tampered[100] ^= 0x01
        (tmp_path / "tampered.wasm").write_bytes(bytes(tampered))
        with pytest.raises(StartError, match=r"hash mismatch|does not compile"):
            await host.start_actor(str(tmp_path / "tampered.wasm"))
        # expired
        with pytest.raises(StartError, match="expired"):
            await host.start_actor(resign("hostcheck", tmp_path, caps=[], name="old", issuer=trusted,
                                          expires_in_days=-1))
        # issuer not on the allow-list
        with pytest.raises(StartError, match="allow-list"):
            await host.start_actor(resign("hostcheck", tmp_path, caps=[], name="stranger"))

        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        target = WasmCloudEntity.actor(good.public_key)
        subject = f"wasmbus.rpc.{lattice_prefix}.{good.public_key}"
        try:
            # a call without the capability claim
            call = pack({"binding": "default", "namespace": "waft:test", "operation": "Test.Echo", "payload": b""})
            with pytest.raises(RpcError, match="host error: denied: Invocation not authorized: missing capability "
                                               "claim for waft:test"):
                await rpc.invoke(CALLER, target, "Test.Call", call)
            # an inbound call from a provider contract the actor does not claim
            with pytest.raises(RpcError, match="missing the capability claim"):
                await rpc.invoke(WasmCloudEntity.provider("V" + "C" * 55, "wasmcloud:httpserver", "default"), target,
                                 "HttpServer.HandleRequest", http_request())
            # an invocation signed by a stranger, and one whose payload was changed after signing
            stranger = LatticeRpc(nc, LatticeConfig(lattice_prefix, KeyPair.generate(Role.CLUSTER), "N" * 56))
            with pytest.raises(RpcError, match="not a cluster issuer"):
                await stranger.invoke(CALLER, target, "Test.Echo", b"x")
            from waft.lattice.signing import sign_invocation

            inv = Invocation(origin=CALLER, target=target, operation="Test.Echo", msg=b"original")
            sign_invocation(inv, cluster)
            inv.msg = b"changed!"
            reply = InvocationResponse.decode((await nc.request(subject, inv.encode(), timeout=5)).data)
            assert reply.error and "hash" in reply.error
            # malformed msgpack
            reply = InvocationResponse.decode((await nc.request(subject, b"\xc1\xff garbage", timeout=5)).data)
            assert reply.error and "malformed msgpack" in reply.error
            # an unknown operation
            with pytest.raises(RpcError, match=r"No handler registered for function Nope\.Never"):
                await rpc.invoke(CALLER, target, "Nope.Never", b"")
            # a missing chunk in object store
            inv = Invocation(origin=CALLER, target=target, operation="Test.Echo", msg=b"", content_length=5_000_000)
            sign_invocation(inv, cluster, payload=b"\x00" * 5_000_000)
            reply = InvocationResponse.decode((await nc.request(subject, inv.encode(), timeout=5)).data)
            assert reply.error and "missing from object store" in reply.error
            # and after all that, the host still serves
            assert await rpc.invoke(CALLER, target, "Test.Echo", b"still here") == b"still here"
        finally:
            await nc.close()


async def test_deadline_and_memory_cap_fail_alone(nats_url, lattice_prefix):
    from waft.host.wapc import Limits

    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            limits=Limits(memory_bytes=32 * 1024 * 1024, deadline_ms=300), rpc_timeout_s=5) as host:
        pool = await host.start_actor(str(built_actor("hostcheck")))
        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        target = WasmCloudEntity.actor(pool.public_key)
        try:
            with pytest.raises(RpcError, match="deadline"):
                await rpc.invoke(CALLER, target, "Test.Loop", b"")
            assert await rpc.invoke(CALLER, target, "Test.Echo", b"next") == b"next"
            with pytest.raises(RpcError, match=r"alloc failed|trapped|memory"):
                await rpc.invoke(CALLER, target, "Test.Alloc", struct.pack("<I", 64))
            assert await rpc.invoke(CALLER, target, "Test.Alloc", struct.pack("<I", 4)) == b"ok"
            with pytest.raises(RpcError, match="trapped"):
                await rpc.invoke(CALLER, target, "Test.Trap", b"")
            assert await rpc.invoke(CALLER, target, "Test.Echo", b"after trap") == b"after trap"
            assert pool.count == 1
            # waiting on a provider does not count against the guest's deadline
            provider = await host.start_provider("python:waft_testprovider")
            await host.put_link(LinkDefinition(pool.public_key, provider.public_key, "waft:test"))
            slow = pack({"binding": "default", "namespace": "waft:test", "operation": "Test.Sleep", "payload": b"600"})
            for _ in range(100):
                try:
                    assert await rpc.invoke(CALLER, target, "Test.Call", slow, timeout=10) == b"slept"
                    break
                except RpcError as exc:
                    assert "not linked" in str(exc) or "no one is serving" in str(exc), exc
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the slow provider call never succeeded")
        finally:
            await nc.close()


async def test_every_control_operation(nats_url, lattice_prefix):
    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        nc = await nats.connect(nats_url)
        ctl = CtlClient(nc, lattice_prefix, timeout=5)
        try:
            hosts = await ctl.get_hosts()
            assert [h["id"] for h in hosts] == [host.host_id]
            assert hosts[0]["lattice_prefix"] == lattice_prefix
            async with ctl.events() as events:
                echo = str(built_actor("echo"))
                await ctl.start_actor(host.host_id, echo, count=2)
                started = await wait_for_event(events, "actor_started", image_ref=echo)
                actor_id = started.public_key
                await wait_for_event(events, "actor_started", image_ref=echo)
                inventory = await ctl.get_inventory(host.host_id)
                assert [len(a["instances"]) for a in inventory["actors"]] == [2]

                await ctl.scale_actor(host.host_id, actor_id, 3)
                await wait_for_event(events, "actor_started", public_key=actor_id)
                assert len((await ctl.get_inventory(host.host_id))["actors"][0]["instances"]) == 3

                await ctl.stop_actor(host.host_id, actor_id, count=1)
                await wait_for_event(events, "actor_stopped", public_key=actor_id)
                assert len((await ctl.get_inventory(host.host_id))["actors"][0]["instances"]) == 2

                await ctl.start_provider(host.host_id, "python:waft_testprovider", "default")
                provider = await wait_for_event(events, "provider_started", image_ref="python:waft_testprovider")
                provider_id = provider.public_key
                await wait_for_event(events, "health_check_passed", public_key=provider_id, timeout=15)
                inventory = await ctl.get_inventory(host.host_id)
                assert [p["id"] for p in inventory["providers"]] == [provider_id]

                await ctl.put_link(actor_id, provider_id, "waft:test", values={"k": "v"})
                await wait_for_event(events, "linkdef_set", actor_id=actor_id)
                links = await ctl.get_links()
                assert [(ln["actor_id"], ln["provider_id"], ln["values"]) for ln in links] == [
                    (actor_id, provider_id, {"k": "v"})]
                claims = await ctl.get_claims()
                assert {c["sub"] for c in claims} >= {actor_id, provider_id}
                assert any(c["caps"] == "wasmcloud:httpserver,wasmcloud:builtin:logging" for c in claims)

                await ctl.delete_link(actor_id, "waft:test")
                await wait_for_event(events, "linkdef_deleted", actor_id=actor_id)
                assert await ctl.get_links() == []
                with pytest.raises(CtlError, match="no such link"):
                    await ctl.delete_link(actor_id, "waft:test")

                await ctl.stop_provider(host.host_id, provider_id, "default")
                await wait_for_event(events, "provider_stopped", public_key=provider_id)
                assert (await ctl.get_inventory(host.host_id))["providers"] == []

                bids = await ctl.auction_actor(echo, {"hostcore.os": "linux"})
                assert [b["host_id"] for b in bids] == [host.host_id]
                assert await ctl.auction_actor(echo, {"zone": "mars"}) == []

                with pytest.raises(CtlError, match="missing actor_ref"):
                    await ctl._command("cmd", host.host_id, "la", body={})
                reply = await nc.request(f"wasmbus.ctl.{lattice_prefix}.linkdefs.put", b"{not json", timeout=5)
                answer = json.loads(reply.data)
                assert answer["accepted"] is False and "not JSON" in answer["error"]

                await ctl.stop_host(host.host_id)
                await wait_for_event(events, "host_stopped")
        finally:
            await nc.close()



async def test_stopping_a_host_interrupts_a_running_guest(nats_url, lattice_prefix):
    """A guest looping when its host stops must not keep a worker thread (and the process) alive."""
    import threading

    from waft.host.wapc import Limits

    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            limits=Limits(deadline_ms=600_000)) as host:
        pool = await host.start_actor(str(built_actor("hostcheck")))
        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        looping = asyncio.create_task(rpc.invoke(CALLER, WasmCloudEntity.actor(pool.public_key), "Test.Loop", b"",
                                                 timeout=3))
        for _ in range(200):  # until the guest is inside its loop
            if pool.free_count == 0:
                break
            await asyncio.sleep(0.02)
        assert pool.free_count == 0
    # leaving running_host stopped the host: the 10-minute deadline did not hold it up
    assert not [t for t in threading.enumerate() if t.name.startswith("waft-actor")]
    with pytest.raises(RpcError):
        await looping
    await nc.close()


async def test_an_instance_past_recycle_bytes_is_replaced_after_its_call(nats_url, lattice_prefix):
    """wasm memory never shrinks: one large request would leave an instance at its high-water mark for good.
    Past `recycle_bytes` the instance answers, then a fresh one takes its place (same id, memory back down)."""
    from waft.host.wapc import Limits

    cluster = KeyPair.generate(Role.CLUSTER)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed,
                            limits=Limits(recycle_bytes=8 * 1024 * 1024, recycle_idle_ms=0), rpc_timeout_s=5) as host:
        pool = await host.start_actor(str(built_actor("hostcheck")))
        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        target = WasmCloudEntity.actor(pool.public_key)
        try:
            (first,) = pool.instances
            start = first.wapc.memory_size()
            assert await rpc.invoke(CALLER, target, "Test.Alloc", struct.pack("<I", 2)) == b"ok"  # within: kept
            assert pool.instances[0] is first and pool.recycled == 0
            assert await rpc.invoke(CALLER, target, "Test.Alloc", struct.pack("<I", 16)) == b"ok"  # answered...
            (fresh,) = pool.instances  # ...then replaced
            assert fresh is not first and fresh.instance_id == first.instance_id and pool.recycled == 1
            assert fresh.wapc.memory_size() == start < 8 * 1024 * 1024
            assert await rpc.invoke(CALLER, target, "Test.Echo", b"still here") == b"still here"
        finally:
            await nc.close()


async def test_a_big_instance_is_kept_while_in_use_and_recycled_once_idle(nats_url, lattice_prefix):
    """A stream of large inputs must not get a fresh instance per call (each next input would fault its memory
    in again): past `recycle_bytes` an instance keeps serving while calls come, and is replaced once it has had
    none for `recycle_idle_ms`."""
    from waft.host.wapc import Limits

    cluster = KeyPair.generate(Role.CLUSTER)
    limits = Limits(recycle_bytes=8 * 1024 * 1024, recycle_idle_ms=1000)
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed, limits=limits,
                            rpc_timeout_s=5) as host:
        pool = await host.start_actor(str(built_actor("hostcheck")))
        nc, rpc = await lattice_client(nats_url, lattice_prefix, cluster)
        target = WasmCloudEntity.actor(pool.public_key)
        try:
            (first,) = pool.instances
            for _ in range(3):  # in use: kept, big
                assert await rpc.invoke(CALLER, target, "Test.Alloc", struct.pack("<I", 16)) == b"ok"
                assert pool.instances == [first] and pool.recycled == 0
            assert first.wapc.memory_size() > 8 * 1024 * 1024
            for _ in range(100):  # then idle: replaced (same id, memory back down)
                if pool.recycled:
                    break
                await asyncio.sleep(0.1)
            (fresh,) = pool.instances
            assert pool.recycled == 1 and fresh is not first and fresh.instance_id == first.instance_id
            assert fresh.wapc.memory_size() < 8 * 1024 * 1024
            assert await rpc.invoke(CALLER, target, "Test.Echo", b"still here") == b"still here"
        finally:
            await nc.close()


async def test_a_call_alias_names_one_actor(nats_url, lattice_prefix, tmp_path):
    """A second actor claiming a taken call alias is refused (the first match would depend on which claims a
    host saw first); the first keeps the alias, and a restart of the same actor is not a conflict."""
    cluster = KeyPair.generate(Role.CLUSTER)
    first = resign("echo", tmp_path, caps=[], name="first", call_alias="waft/shared")
    second = resign("echo", tmp_path, caps=[], name="second", call_alias="waft/shared")
    async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed) as host:
        pool = await host.start_actor(first)
        with pytest.raises(StartError, match="call alias 'waft/shared' is already claimed by actor " + pool.public_key):
            await host.start_actor(second)
        assert host.cache.find_alias("waft/shared") == pool.public_key
        await host.start_actor(first)  # more instances of the same actor
        assert pool.count == 2


async def test_a_lattice_cache_stream_with_other_settings_is_reconciled(nats_url, lattice_prefix):
    from waft.lattice import subjects

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    name = subjects.lattice_cache_stream(lattice_prefix)
    try:
        await js.add_stream(name=name, subjects=[subjects.lattice_cache(lattice_prefix, ">")],
                            max_msgs_per_subject=50)  # e.g. made by hand or by an older version
        cluster = KeyPair.generate(Role.CLUSTER)
        async with running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed):
            assert (await js.stream_info(name)).config.max_msgs_per_subject == 1
    finally:
        await nc.close()
