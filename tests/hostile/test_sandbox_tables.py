"""The sandbox's caps beyond linear memory: a guest cannot grow its tables past `table_elements` (before this
cap, `table.grow` allocated 128 MiB outside a 1 MiB memory cap), nor declare more tables or memories; its
compute budget is per invocation (host calls pause it, never refill it) under a wall-clock cap.

The guest is a hand-written module (WAT), the smallest thing that tries; the limits are the host's own."""

from __future__ import annotations

import pytest

from waft.host.wapc import ActorTrap, Limits, Runtime

GROWER = """
(module
  (table 1 funcref)
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 0))
  (func (export "grow") (param i32) (result i32) (table.grow 0 (ref.null func) (local.get 0))))
"""

MANY_TABLES = "(module (memory (export \"memory\") 1) (func (export \"__guest_call\") (param i32 i32) (result i32) " \
              "(i32.const 0)) " + " ".join("(table 1 funcref)" for _ in range(Limits.TABLES_PER_STORE + 1)) + ")"


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime()


def test_table_growth_stops_at_the_limit(runtime: Runtime) -> None:
    instance = runtime.compile(GROWER.encode()).instantiate(lambda *_: b"", Limits(table_elements=1000))
    grow = instance.instance.exports(instance.store)["grow"]
    assert grow(instance.store, 10) == 1  # the old size: allowed
    assert grow(instance.store, 2_000_000) == -1  # refused, nothing allocated
    assert grow(instance.store, 989) == 11  # up to the limit exactly
    assert grow(instance.store, 1) == -1


def test_the_default_limit_applies_from_settings(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> None:
    monkeypatch.setenv("WAFT_ACTOR_TABLE_ELEMENTS", "50")
    limits = Limits.from_settings()
    assert limits.table_elements == 50 and Limits().table_elements == 10_000
    instance = runtime.compile(GROWER.encode()).instantiate(lambda *_: b"", limits)
    assert instance.instance.exports(instance.store)["grow"](instance.store, 50) == -1


def test_more_tables_than_an_actor_has_are_refused(runtime: Runtime) -> None:
    with pytest.raises(ActorTrap, match="instantiation failed"):
        runtime.compile(MANY_TABLES.encode()).instantiate(lambda *_: b"", Limits())


#: Computes ~tens of ms, makes a (free) host call, and does it again, for ever: never over the deadline between
#: two host calls, so only a budget that host calls pause but never refill stops it.
STEADY_COMPUTER = """
(module
  (import "wapc" "__host_call" (func $hc (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32) (local $i i32)
    (loop $forever
      (local.set $i (i32.const 0))
      (loop $busy
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $busy (i32.lt_u (local.get $i) (i32.const 5000000))))
      (drop (call $hc (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                      (i32.const 0) (i32.const 0)))
      (br $forever))
    (i32.const 0)))
"""


def test_host_calls_do_not_refill_the_compute_budget(runtime: Runtime) -> None:
    calls = 0

    def host_call(*_: object) -> bytes:
        nonlocal calls
        calls += 1
        return b""

    instance = runtime.compile(STEADY_COMPUTER.encode()).instantiate(host_call, Limits(deadline_ms=400))
    with pytest.raises(ActorTrap, match="deadline") as info:
        instance.call("Run", b"")
    assert info.value.deadline and calls >= 2  # it did make host calls, and was stopped all the same


def test_the_wall_clock_cap_stops_an_invocation_waiting_in_host_calls(runtime: Runtime) -> None:
    import time

    def slow_host_call(*_: object) -> bytes:
        time.sleep(0.1)  # waiting: not the guest's computing
        return b""

    instance = runtime.compile(STEADY_COMPUTER.encode()).instantiate(slow_host_call,
                                                                      Limits(deadline_ms=60_000, wall_ms=300))
    with pytest.raises(ActorTrap, match="300 ms wall-clock cap"):
        instance.call("Run", b"")
