"""Inference metrics: one access event per HTTP request in, Prometheus text and live chart series out.

The httpserver provider publishes an `AccessRecord` (`waft.interfaces.httpserver`) on
`subjects.access_log(prefix)` for every request it answers. `AccessMetrics` folds them into

* Prometheus series in a registry of its own (requests, errors, latency histogram by model and route),
  plus a collector that reads the lattice model at scrape time (actor instances, provider restarts, and the
  model server's own counters per model from its health details: queue wait, compute time, batch sizes);
* per-model one-second buckets (requests/s, p50/p95 latency, errors) for the page's charts.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from waft import __version__
from waft.interfaces.httpserver import AccessRecord, BadAccessRecord
from waft.interfaces.mlinference import stats_in_health

#: Seconds of history kept for the charts.
WINDOW_S = 120
#: Latency buckets in seconds, from a cached tiny model (sub-ms) to a cold large one.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Label values are bounded so a scan of random paths cannot grow the registry without end.
MAX_LABEL_VALUES = 200
OTHER = "other"
NO_MODEL = "-"


#: Batch-size buckets: a model server batches up to a few hundred rows.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Triton's compute phases, as the `phase` label of waft_model_compute_seconds.
COMPUTE_PHASES = {"input": "compute_input", "infer": "compute_infer", "output": "compute_output"}
NS = 1e-9


#: Path segments a route template keeps; deeper paths are cut (the label set stays bounded either way).
MAX_ROUTE_SEGMENTS = 6


def route_of(path: str, model: str = "") -> str:
    """The route template of a request path, as Prometheus users expect a `route` label: the model's segment
    becomes `{model}` and a version `{version}`, so `/v2/models/m/ready` probes and `/v2/models/m/infer`
    calls are separate series while every model shares them (the `model` label tells models apart).
    `/effnetlite0/matches?k=3` -> `/{model}/matches`; `/v2/models/m/versions/2/infer` ->
    `/v2/models/{model}/versions/{version}/infer`."""
    segments = [s for s in path.split("?", 1)[0].split("#", 1)[0].split("/") if s][:MAX_ROUTE_SEGMENTS]
    out = []
    for i, segment in enumerate(segments):
        if model and segment == model and (i == 0 or out[i - 1] == "models"):
            out.append("{model}")
        elif i > 0 and out[i - 1] == "versions" and "{model}" in out:
            out.append("{version}")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class _Bucket:
    second: int
    count: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class ModelSeries:
    """Per-second buckets of one model; `points()` is what the charts draw."""

    buckets: deque[_Bucket] = field(default_factory=lambda: deque(maxlen=WINDOW_S))
    total: int = 0
    errors: int = 0

    def add(self, second: int, ms: float, error: bool) -> None:
        if not self.buckets or self.buckets[-1].second != second:
            if self.buckets and self.buckets[-1].second > second:  # clock went back: fold into the last
                second = self.buckets[-1].second
            else:
                self.buckets.append(_Bucket(second))
        bucket = self.buckets[-1]
        bucket.count += 1
        bucket.latencies.append(ms)
        self.total += 1
        if error:
            bucket.errors += 1
            self.errors += 1

    def points(self, now_s: int, span: int = 60) -> list[dict[str, float]]:
        """One point per second for the last `span` seconds (zeros where nothing arrived)."""
        by_second = {b.second: b for b in self.buckets}
        out = []
        for second in range(now_s - span + 1, now_s + 1):
            bucket = by_second.get(second)
            if bucket is None:
                out.append({"t": second, "rps": 0, "p50": 0.0, "p95": 0.0, "errors": 0})
                continue
            lat = sorted(bucket.latencies)
            out.append({"t": second, "rps": bucket.count, "p50": round(percentile(lat, 0.5), 3),
                        "p95": round(percentile(lat, 0.95), 3), "errors": bucket.errors})
        return out

    def recent_latencies(self, now_s: int, span: int = 60) -> list[float]:
        return sorted(ms for b in self.buckets if b.second > now_s - span for ms in b.latencies)

    def last_second(self) -> int:
        return self.buckets[-1].second if self.buckets else 0


class _Bounded:
    """Maps label values into a bounded set; the overflow goes to `other`."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.limit:
            return OTHER
        self.seen.add(value)
        return value


def _duration(stats: Any, key: str) -> tuple[float, float]:
    """(count, seconds) of one of Triton's {count, ns} durations; zeros for anything unreadable."""
    entry = stats.get(key) if isinstance(stats, dict) else None
    if not isinstance(entry, dict):
        return 0.0, 0.0
    count, ns = entry.get("count"), entry.get("ns")
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in (count, ns))
    return (float(count), float(ns) * NS) if ok else (0.0, 0.0)  # type: ignore[arg-type]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else 0.0


class _ModelFamilies:
    """The model server's per-model counters as Prometheus families: what Triton's statistics extension counts,
    named as Prometheus expects (`_seconds` summaries, `_total` counters, a batch-size histogram)."""

    LABELS = ["model", "provider", "link_name", "host"]

    def __init__(self) -> None:
        labels = self.LABELS
        self.queue = SummaryMetricFamily("waft_model_queue_seconds", "Time requests waited in the model server for "
                                         "a slot (and a batch)", labels=labels)
        self.compute = SummaryMetricFamily("waft_model_compute_seconds", "Model server time per phase: input "
                                           "(decode, checks), infer (the engine), output (encoding), per request",
                                           labels=[*labels, "phase"])
        self.requests = SummaryMetricFamily("waft_model_request_duration_seconds", "Predict requests the model "
                                            "server answered and their time in it, by outcome",
                                            labels=[*labels, "outcome"])
        self.inferences = CounterMetricFamily("waft_model_inferences", "Inferences (requests) the model answered",
                                              labels=labels)
        self.executions = CounterMetricFamily("waft_model_executions", "Engine runs (a batch counts once)",
                                              labels=labels)
        self.batch = HistogramMetricFamily("waft_model_batch_size", "Requests per engine run (a micro-batch "
                                                   "counts each request it gathered)", labels=labels)

    def add(self, labels: list[str], stats: Any) -> None:
        inference = stats.get("inference_stats") if isinstance(stats, dict) else None
        self.queue.add_metric(labels, *_duration(inference, "queue"))
        for phase, key in COMPUTE_PHASES.items():
            self.compute.add_metric([*labels, phase], *_duration(inference, key))
        for outcome in ("success", "fail"):
            self.requests.add_metric([*labels, outcome], *_duration(inference, outcome))
        self.inferences.add_metric(labels, _number(stats.get("inference_count")))
        self.executions.add_metric(labels, _number(stats.get("execution_count")))
        runs: dict[int, float] = {}
        for entry in stats.get("batch_stats") or ():
            if isinstance(entry, dict) and isinstance(entry.get("batch_size"), int):
                runs[entry["batch_size"]] = runs.get(entry["batch_size"], 0.0) + _duration(entry, "compute_infer")[0]
        buckets = [(floatToGoString(le), sum(n for size, n in runs.items() if size <= le)) for le in BATCH_BUCKETS]
        buckets.append(("+Inf", sum(runs.values())))
        self.batch.add_metric(labels, buckets, sum_value=sum(size * n for size, n in runs.items()))

    def families(self) -> Iterator[Metric]:
        yield from (self.queue, self.compute, self.requests, self.inferences, self.executions, self.batch)


class LatticeCollector(Collector):
    """Actor instances, provider restarts and the model server's counters, read from the lattice model at
    scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        state = self._snapshot()
        instances = GaugeMetricFamily("waft_actor_instances", "Running instances of an actor on a host",
                                      labels=["actor", "name", "host"])
        restarts = CounterMetricFamily("waft_provider_restarts", "Restarts of a provider after it exited",
                                       labels=["provider", "name", "link_name", "host"])
        providers = GaugeMetricFamily("waft_provider_healthy", "1 when the provider's last health check passed",
                                      labels=["provider", "name", "link_name", "host"])
        hosts = GaugeMetricFamily("waft_hosts", "Hosts seen on the lattice")
        hosts.add_metric([], len(state.get("hosts", {})))
        models = _ModelFamilies()
        for host_id, host in state.get("hosts", {}).items():
            for actor in host.get("actors", []):
                instances.add_metric([actor["id"], actor.get("name", ""), host_id], len(actor.get("instances", [])))
            for prov in host.get("providers", []):
                labels = [prov["id"], prov.get("name", ""), prov.get("link_name", ""), host_id]
                restarts.add_metric(labels, float(prov.get("restarts") or 0))
                providers.add_metric(labels, 1.0 if prov.get("healthy") else 0.0)
                details = prov.get("health_details")
                for model, stats in stats_in_health(details if isinstance(details, dict) else {}).items():
                    models.add([model, *labels[:1], labels[2], host_id], dict(stats))
        yield hosts
        yield instances
        yield restarts
        yield providers
        yield from models.families()


class AccessMetrics:
    """Everything the dashboard knows about request traffic."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = clock
        self.requests = Counter("waft_http_requests", "HTTP requests answered by the httpserver provider",
                                ["model", "route", "method", "status"], registry=self.registry)
        self.errors = Counter("waft_http_errors", "HTTP requests answered with status 5xx or 4xx",
                              ["model", "route", "method"], registry=self.registry)
        self.latency = Histogram("waft_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["model", "route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.response_bytes = Counter("waft_http_response_bytes", "Bytes sent in HTTP responses",
                                      ["model", "route", "method"], registry=self.registry)
        build = Info("waft_build", "The Waft that serves these metrics", registry=self.registry)
        build.info({"version": __version__})
        self.rejected = Counter("waft_dashboard_access_events_rejected", "Access events that could not be read",
                                registry=self.registry)
        if snapshot is not None:
            self.registry.register(LatticeCollector(snapshot))
        self.series: dict[str, ModelSeries] = {}
        self._models = _Bounded()
        self._routes = _Bounded()
        self._methods = _Bounded(16)  # a client may send any token as a method
        self.changed = False

    def record(self, event: AccessRecord | Any) -> bool:
        """Fold one access record (or its wire map) in; False (and counted) when it is not one."""
        try:
            record = event if isinstance(event, AccessRecord) else AccessRecord.from_wire(event)
        except BadAccessRecord:
            self.rejected.inc()
            return False
        model_label = self._models(record.model) if record.model else NO_MODEL
        route = self._routes(route_of(record.path, record.model or ""))
        method = self._methods(record.method.upper())
        error = record.status >= 400
        self.requests.labels(model_label, route, method, str(record.status)).inc()
        self.latency.labels(model_label, route, method).observe(record.ms / 1000)
        self.response_bytes.labels(model_label, route, method).inc(max(record.bytes, 0))
        if error:
            self.errors.labels(model_label, route, method).inc()
        self.series.setdefault(model_label, ModelSeries()).add(int(self.clock()), record.ms, error)
        self.changed = True
        return True

    def active(self, span: int = 62) -> bool:
        """True while some model had traffic within the chart window (the charts still move)."""
        now = int(self.clock())
        return any(s.last_second() > now - span for s in self.series.values())

    def summary(self, span: int = 60) -> dict[str, Any]:
        """What the page draws: per model, totals, current rates and the per-second points."""
        now = int(self.clock())
        models = {}
        for name, series in sorted(self.series.items()):
            lat = series.recent_latencies(now, span)
            points = series.points(now, span)
            recent = points[-5:]
            models[name] = {
                "total": series.total, "errors": series.errors,
                "rps": round(sum(p["rps"] for p in recent) / len(recent), 2) if recent else 0,
                "p50": round(percentile(lat, 0.5), 3), "p95": round(percentile(lat, 0.95), 3),
                "points": points,
            }
        return {"now": now, "span": span, "models": models}

    def model_names(self) -> Iterable[str]:
        return self.series.keys()
