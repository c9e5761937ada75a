"""The dashboard's metrics must not grow a series per value an HTTP client makes up: any token is a valid HTTP
method to aiohttp, so 50 000 requests with 50 000 methods made 50 000 series (and as many in every scrape).
Checked on the Prometheus text a scraper reads, against the requests sent."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from waft.dashboard.metrics import OTHER, AccessMetrics

SENT = 5000


def test_made_up_methods_paths_and_models_share_bounded_label_sets() -> None:
    metrics = AccessMetrics(clock=lambda: 1000.0)
    for i in range(SENT):
        assert metrics.record({"method": f"X{i}", "path": f"/scan{i}/matches", "status": 404, "bytes": 0, "ms": 1,
                               "model": f"scan{i}"})
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    samples = [s for s in families["waft_http_requests"].samples if s.name.endswith("_total")]
    assert sum(s.value for s in samples) == SENT  # every request counted…
    methods = {s.labels["method"] for s in samples}
    models = {s.labels["model"] for s in samples}
    assert OTHER in methods and len(methods) <= 17, len(methods)  # …in a bounded number of series
    assert OTHER in models and len(models) < SENT // 10, len(models)
    assert len(samples) < SENT // 10, len(samples)
