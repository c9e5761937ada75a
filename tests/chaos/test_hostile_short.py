"""The short version of `make chaos`'s hostile client, against the real ML application.

While an attacker sends the expensive small JPEG and bodies trickling at the body-read limit, every ordinary
request must be answered, and answered correctly; the attacker's JPEGs over the decode budget are refused
(400) and those exactly at it served (200). How much slower ordinary requests get is measured by `make chaos`
(docs/reliability.md), not asserted here: it depends on the machine.
"""

from __future__ import annotations

import asyncio

import pytest
from waft_testing import ROOT

from tools.chaos import SLOW_BODIES, ml_workload, run_hostile

pytestmark = pytest.mark.timeout(600)


@pytest.mark.skipif(not (ROOT / "build" / "actors" / "api_s.wasm").exists(), reason="actors not built (make actors)")
def test_ordinary_requests_are_answered_correctly_under_a_hostile_client() -> None:
    result = asyncio.run(run_hostile(ml_workload(), rate=4, duration=8))
    for phase in (result.unloaded, result.attacked):
        assert len(phase.requests) == 32
        assert all(r.status == "200" and r.correct for r in phase.requests), phase.row()
    assert result.jpeg_answers and set(result.jpeg_answers) == {"400"}, result.row()  # over the budget
    assert result.at_budget_answers and set(result.at_budget_answers) == {"200"}, result.row()  # at it: served
    assert sum(result.body_answers.values()) >= SLOW_BODIES, result.row()  # every slow body was sent and ended
    assert "200" not in result.body_answers, result.row()
