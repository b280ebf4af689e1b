"""Prometheus metrics of the controller (on the process's default registry, so the API
server's ``/metrics`` serves them in the embedded default)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RECONCILES = Counter(
    "devbox_controller_reconciles_total", "Reconciles of a devbox, by result.", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "devbox_controller_reconcile_duration_seconds",
    "How long one reconcile took.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
START_SECONDS = Histogram(
    "devbox_start_duration_seconds",
    "From creating (or starting) a devbox to Running.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
COMMIT_SECONDS = Histogram(
    "devbox_commit_duration_seconds",
    "How long a commit took, from its record to its result.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800),
)
COMMIT_BYTES = Histogram(
    "devbox_commit_size_bytes",
    "Compressed bytes a commit uploaded.",
    buckets=tuple(float(4**i) * 1024 for i in range(12)),
)
COMMIT_FAILURES = Counter(
    "devbox_commit_failures_total", "Failed commits, by node-shim status code.", ["reason"]
)


class _Gauges(Collector):
    """Queue depth and devboxes by phase, read from the running controller at scrape time."""

    def __init__(self) -> None:
        self.queue_depth: Callable[[], int] | None = None
        self.phases: Callable[[], Iterable[str]] | None = None

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("devbox_controller_queue_depth", "Devbox keys waiting.")
        depth.add_metric([], float(self.queue_depth() if self.queue_depth else 0))
        yield depth
        by_phase = GaugeMetricFamily("devbox_devboxes", "Devboxes by phase.", labels=["phase"])
        for phase, count in sorted(Tally(self.phases() if self.phases else ()).items()):
            by_phase.add_metric([phase], float(count))
        yield by_phase


GAUGES = _Gauges()
REGISTRY.register(GAUGES)
INFORMER_RESTARTS = Counter(
    "devbox_controller_informer_restarts_total",
    "Informers restarted after they ended unexpectedly, by resource.",
    ["resource"],
)
