"""Short guests that cannot call out run on the event loop thread (`ActorPool.call`): their answers are the
worker threads' answers, a call that turns out long is stopped there and run again on a worker, and a guest
that may call out never runs there.

The guest is a hand-written module (WAT) that counts to the number in its payload and answers the count: the
answer is known without running it, and the payload says how long it computes."""

from __future__ import annotations

import asyncio
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest
import wasmtime

from waft.claims import KeyPair, Role, sign_actor, verify_actor
from waft.host.actors import INLINE_DEADLINE_MS, ActorPool
from waft.host.wapc import ActorTrap, HostCallError, Limits, Runtime

#: Reads its 4-byte payload N (at 64), counts to N (N = -1: for ever) and answers the count.
COUNTER = """
(module
  {imports}
  (import "wapc" "__guest_request" (func $req (param i32 i32)))
  (import "wapc" "__guest_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (local $n i32) (local $i i32)
    (call $req (i32.const 0) (i32.const 64))
    (local.set $n (i32.load (i32.const 64)))
    (block $done (loop $count
      (br_if $done (i32.eq (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $count)))
    (i32.store (i32.const 128) (local.get $i))
    (call $resp (i32.const 128) (i32.const 4))
    (i32.const 1)))
"""
CALLS_OUT = '(import "wapc" "__host_call" (func $hc (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))'
#: Enough counting for well over INLINE_DEADLINE_MS on any machine (a few ns an iteration).
LONG = 2_000_000_000


def _refuse(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
    raise HostCallError("no host calls here", kind="denied")


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime()


@pytest.fixture
def executor():
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool


def make_pool(runtime: Runtime, executor: ThreadPoolExecutor, *, calls_out: bool = False,
              limits: Limits = Limits()) -> ActorPool:
    wasm = wasmtime.wat2wasm(COUNTER.format(imports=CALLS_OUT if calls_out else ""))
    signed = sign_actor(bytes(wasm), issuer=KeyPair.generate(Role.ACCOUNT), subject=KeyPair.generate(Role.MODULE),
                        name="counter")
    return ActorPool(runtime.compile(signed), verify_actor(signed, allowed_issuers=None), "counter.wasm", limits,
                     executor, lambda pool: _refuse)


def count(n: int) -> bytes:
    return struct.pack("<i", n)


async def test_a_short_pure_guest_moves_to_the_loop_and_answers_the_same(runtime, executor) -> None:
    pool = make_pool(runtime, executor)
    await pool.add(2)
    assert pool.module.pure
    answers = [await pool.call("Count", count(n), timeout=30) for n in (0, 7, 1000, 3)]
    assert [struct.unpack("<i", answer)[0] for answer, _ in answers] == [0, 7, 1000, 3]
    assert pool.inline_calls == 3  # the first call, unmeasured, ran on a worker
    assert {instance for _, instance in answers} <= {i.instance_id for i in pool.instances}


async def test_a_long_call_is_stopped_on_the_loop_and_run_again_on_a_worker(runtime, executor) -> None:
    pool = make_pool(runtime, executor)
    await pool.add(1)
    await pool.call("Count", count(1), timeout=30)
    answer, _ = await pool.call("Count", count(LONG), timeout=60)
    assert struct.unpack("<i", answer)[0] == LONG  # the whole count, from the worker's run
    assert pool.inline_calls == 0 and pool.errors == 0
    assert pool.cost_s is not None and pool.cost_s * 1000 >= INLINE_DEADLINE_MS / 10  # no longer "short"
    await pool.call("Count", count(1), timeout=30)
    assert pool.inline_calls == 0  # back on workers until its calls are short again


async def test_a_deadline_shorter_than_the_inline_cut_off_is_the_real_deadline(runtime, executor) -> None:
    pool = make_pool(runtime, executor, limits=Limits(deadline_ms=50))
    await pool.add(1)
    await pool.call("Count", count(1), timeout=30)
    with pytest.raises(ActorTrap, match="50 ms deadline"):
        await pool.call("Count", count(-1), timeout=30)  # for ever: stopped, not run again
    assert pool.errors == 1 and len(pool.instances) == 1  # replaced
    answer, _ = await pool.call("Count", count(5), timeout=30)
    assert answer == count(5)


async def test_a_guest_that_may_call_out_and_the_setting_keep_calls_on_workers(runtime, executor,
                                                                             monkeypatch) -> None:
    caller = make_pool(runtime, executor, calls_out=True)
    await caller.add(1)
    assert not caller.module.pure
    monkeypatch.setenv("WAFT_ACTOR_INLINE_US", "0")
    off = make_pool(runtime, executor, limits=Limits.from_settings())
    await off.add(1)
    assert Limits().inline_us == 1000 and off.limits.inline_us == 0
    for pool in (caller, off):
        for n in range(5):
            assert (await pool.call("Count", count(n), timeout=30))[0] == count(n)
        assert pool.inline_calls == 0


async def test_the_loop_runs_other_work_between_inline_calls(runtime, executor) -> None:
    """Inline calls are plain calls on the loop: many of them at once all finish, in any interleaving."""
    pool = make_pool(runtime, executor)
    await pool.add(3)
    await pool.call("Count", count(1), timeout=30)
    results = await asyncio.gather(*(pool.call("Count", count(n), timeout=30) for n in range(50)))
    assert [answer for answer, _ in results] == [count(n) for n in range(50)]
    assert pool.inline_calls >= 1
