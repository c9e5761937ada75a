"""The short version of `make chaos`'s cluster half: a three-member NATS cluster on 127.0.0.2-4, each member
with its own host, the ML app, and faults under a light load (tools/chaos_cluster.py).

What must hold whatever the machine's speed: every request ends, no wrong answer, the lattice cache and
apps store lose nothing they held before the fault, a write made during the fault is kept, the lattice
streams have three replicas, and the lattice serves correctly again after each fault (run_cluster_scenarios
waits for a correct answer after each repair, or raises). How fast errors stop is measured by `make chaos`.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from waft_testing import ROOT

from tools.chaos import ml_workload
from tools.chaos_cluster import ClusterLattice, run_cluster_scenarios

pytestmark = pytest.mark.timeout(900)

# the short list; make chaos also kills the member host A uses, and host C
SCENARIOS = ("SIGKILL NATS member C", "SIGSTOP NATS member B", "add a fourth member")


@pytest.mark.skipif(not (ROOT / "build" / "actors" / "api_s.wasm").exists(), reason="actors not built (make actors)")
def test_cluster_faults_under_load_lose_nothing_and_never_answer_wrong() -> None:
    hosts_after: dict[str, int] = {}

    async def check(lattice: ClusterLattice, name: str) -> None:
        hosts = json.loads(await lattice.ctl("get", "hosts", "-o", "json") or "[]")
        hosts_after[name] = len({h["labels"].get("role", "a") for h in hosts})

    results = asyncio.run(run_cluster_scenarios(ml_workload(), rate=3, duration=8, fault_at=2, only=SCENARIOS,
                                                stop_s=4, check=check))
    assert [r.scenario.name.split(" for ")[0] for r in results] == [
        "SIGKILL NATS member C", "SIGSTOP NATS member B", "add a fourth member and host"]
    for result in results:
        row = result.row()
        assert len(result.scenario.requests) == 24
        # the reconciler (one per lattice, any host) has the app's declared counts again after the repair
        assert result.restored_s is not None, row
        assert result.scenario.unfinished == 0, row
        assert result.scenario.wrong == 0, row
        assert any(r.status == "200" for r in result.scenario.requests), row
        assert result.state_before > 0 and result.lost == [], row
        assert result.written_during, row
        assert set(result.replicas.values()) == {3} and len(result.replicas) >= 2, row
    # every host is back after each repair, and the fourth joined
    assert [hosts_after[r.scenario.name] for r in results] == [3, 3, 4]
