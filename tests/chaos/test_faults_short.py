"""The short version of `make chaos`: two faults under load against the real ML application.

What must hold whatever the machine's speed: every request ends (an answer or an error, none hangs
past its timeout), no wrong answer is ever returned, and the lattice serves correctly again after
the fault. How fast it recovers is measured by `make chaos`, not asserted here.
"""

from __future__ import annotations

import asyncio

import pytest
from waft_testing import ROOT

from tools.chaos import ml_workload, run_scenarios

pytestmark = pytest.mark.timeout(600)


@pytest.mark.skipif(not (ROOT / "build" / "actors" / "api_s.wasm").exists(), reason="actors not built (make actors)")
def test_faults_under_load_never_give_a_wrong_answer() -> None:
    results = asyncio.run(run_scenarios(ml_workload(), rate=4, duration=8, fault_at=2,
                                        only=("SIGKILL mlinference provider", "SIGKILL host B")))
    assert [r.name for r in results] == ["SIGKILL mlinference provider", "SIGKILL host B"]
    for result in results:
        assert len(result.requests) == 32
        assert result.unfinished == 0, result.row()
        assert result.wrong == 0, result.row()
        ok = [r for r in result.requests if r.status == "200"]
        assert ok, f"{result.name}: nothing succeeded at all: {result.row()}"
    # run_scenarios repairs after each fault and waits for a correct answer before it returns: the
    # lattice is serving correctly again, or it would have raised
