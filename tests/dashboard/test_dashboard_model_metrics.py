"""The model server's own counters on the dashboard's /metrics: queue wait, compute time per phase, requests by
outcome and batch sizes per model, read from the mlinference provider's health details and written with
Prometheus' naming conventions (`_seconds` summaries, `_total` counters, a histogram). The text is read back with
prometheus_client's own parser, and the values are compared with what the test sent and with the provider's
ListModels statistics (Triton's statistics extension form)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from conftest import serving_dashboard
from prometheus_client.parser import text_string_to_metric_families
from waft_testing import running_host

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mlinference"))
from mlinference_support import ZOO, bindle_server, link_values, ml_client, mlcheck_actor

from waft.claims import KeyPair, Role
from waft.dashboard.metrics import BATCH_BUCKETS, LatticeCollector
from waft.interfaces.mlinference import CONTRACT_ID, predict_request
from waft.lattice.types import LinkDefinition

pytestmark = pytest.mark.timeout(240)
HEALTH_INTERVAL_S = 0.5


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_batch_sizes_become_a_cumulative_histogram() -> None:
    """Runs of 1, 3 and 8 rows (and one of 300, past the last bucket) as Triton's batch_stats report them."""
    runs = {1: 5, 3: 2, 8: 1, 300: 1}
    stats = {"inference_count": 19 + 300, "execution_count": 9,
             "inference_stats": {"queue": {"count": 4, "ns": 2_500_000_000}},
             "batch_stats": [{"batch_size": size, "compute_infer": {"count": n, "ns": 1000 * n}}
                             for size, n in runs.items()]}
    state = {"hosts": {"H1": {"providers": [{"id": "VP", "name": "mlinference", "link_name": "default",
                                             "healthy": True, "health_details": {"stats": {"m": stats}}}]}}}
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(LatticeCollector(lambda: state))
    got = samples(generate_latest(registry).decode())
    labels = (("host", "H1"), ("link_name", "default"), ("model", "m"), ("provider", "VP"))
    for le in BATCH_BUCKETS:
        want = sum(n for size, n in runs.items() if size <= le)
        assert got[("waft_model_batch_size_bucket", tuple(sorted((*labels, ("le", f"{float(le)}")))))] == want, le
    assert got[("waft_model_batch_size_bucket", tuple(sorted((*labels, ("le", "+Inf")))))] == 9
    assert got[("waft_model_batch_size_count", labels)] == 9
    assert got[("waft_model_batch_size_sum", labels)] == 1 * 5 + 3 * 2 + 8 + 300
    assert got[("waft_model_queue_seconds_count", labels)] == 4
    assert got[("waft_model_queue_seconds_sum", labels)] == 2.5
    assert got[("waft_model_inferences_total", labels)] == 319
    assert got[("waft_model_executions_total", labels)] == 9


async def test_metrics_page_counts_what_the_model_server_served(nats_url: str, lattice_prefix: str,
                                                                tmp_path: Path) -> None:
    cluster = KeyPair.generate(Role.CLUSTER)
    sent = 5
    async with bindle_server(tmp_path / "bindle", routes=("identity",)) as bindle, \
            running_host(nats_url=nats_url, prefix=lattice_prefix, cluster_seed=cluster.seed, rpc_timeout_s=20,
                         health_interval_s=HEALTH_INTERVAL_S) as host, \
            serving_dashboard(nats_url, lattice_prefix, bindle_url=bindle.url) as url:
        pool = await host.start_actor(mlcheck_actor(tmp_path))
        provider = await host.start_provider("python:waft_mlinference")
        await host.put_link(LinkDefinition(pool.public_key, provider.public_key, CONTRACT_ID, "default",
                                           link_values({"identity": ZOO["identity"]}, bindle_url=bindle.url)))
        async with ml_client(nats_url, lattice_prefix, cluster, pool.public_key) as client:
            x = np.arange(4, dtype=np.float32).reshape(1, 4)
            assert (await client.wait_ready(predict_request("identity", x))).ok
            for _ in range(sent - 1):
                assert (await client.predict(predict_request("identity", x))).ok
            bad = await client.predict(predict_request("identity", np.zeros((1, 5), np.float32)))
            assert not bad.ok  # refused by the input check: counted as a failure
            labels = (("host", host.host_key.public_key), ("link_name", "default"), ("model", "identity"),
                      ("provider", provider.public_key))
            async with aiohttp.ClientSession() as http:
                got: dict[Any, float] = {}
                for _ in range(600):  # until a health check after the last request reached the dashboard
                    async with http.get(url.split("?", 1)[0] + "metrics") as response:
                        assert response.status == 200
                        text = await response.text()
                    got = samples(text)
                    if got.get(("waft_model_request_duration_seconds_count",
                                tuple(sorted((*labels, ("outcome", "fail")))))) == 1:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"the dashboard never showed the failed request: {text}")
            (listed,) = await client.list_models()
        kinds = families(text)
        assert kinds["waft_model_queue_seconds"] == kinds["waft_model_compute_seconds"] == "summary"
        assert kinds["waft_model_batch_size"] == "histogram"
        assert kinds["waft_model_inferences"] == kinds["waft_model_executions"] == "counter"

        def value(name: str, *extra: tuple[str, str]) -> float:
            return got[(name, tuple(sorted((*labels, *extra))))]

        # what the test sent: five rows of one, each run alone, and one refused
        assert value("waft_model_inferences_total") == value("waft_model_executions_total") == sent
        assert value("waft_model_queue_seconds_count") == sent
        assert value("waft_model_request_duration_seconds_count", ("outcome", "success")) == sent
        assert value("waft_model_batch_size_bucket", ("le", "1.0")) == sent
        assert value("waft_model_batch_size_sum") == sent
        # the same nanoseconds the provider's statistics report, in seconds
        triton = listed["stats"]["inference_stats"]
        assert value("waft_model_queue_seconds_sum") == pytest.approx(triton["queue"]["ns"] * 1e-9)
        for phase in ("input", "infer", "output"):
            assert value("waft_model_compute_seconds_sum", ("phase", phase)) == pytest.approx(
                triton[f"compute_{phase}"]["ns"] * 1e-9)
            assert value("waft_model_compute_seconds_sum", ("phase", phase)) > 0
        assert value("waft_model_request_duration_seconds_sum", ("outcome", "success")) >= \
            value("waft_model_compute_seconds_sum", ("phase", "infer"))
