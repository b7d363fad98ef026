"""The metrics every stage exposes, in the Prometheus text format, each service in a registry
of its own (several services in one process, as in tests and `tweetner up`'s ingest, never
collide in prometheus-client's global registry).

Every stage has ``tweetner_<stage>_tweets_in_total`` (records it read),
``tweetner_<stage>_tweets_out_total`` (records it passed on or stored),
``tweetner_<stage>_dead_letters_total{reason}`` (by the kind of reason: the text before its
first colon, so label values stay few), ``tweetner_<stage>_batch_latency_seconds`` (a
histogram), ``tweetner_<stage>_consumer_lag{topic,partition}`` where it consumes, and
``tweetner_<stage>_healthy`` (1 or 0, what its /health says). docs/pipeline.md lists the rest.
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds: from a 5 ms micro-batch to a minute-long outage retry.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MODEL_LABELS = ("model_name", "model_version")

# (topic, partition) -> records behind the end of the partition.
Lag = Mapping[tuple[str, int], int]


def reason_kind(reason: str) -> str:
    """``"invalid Tweet: text: ..."`` -> ``"invalid Tweet"``: a bounded label value."""
    return reason.split(":", 1)[0].strip()[:64] or "unknown"


class _LagCollector(Collector):
    def __init__(self, name: str, source: Callable[[], Lag]) -> None:
        self.name = name
        self.source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, "Records in the partition not yet processed",
                                   labels=["topic", "partition"])
        for (topic, partition), lag in sorted(self.source().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family


class StageMetrics:
    """One service's metrics. ``problem`` returns the service's health problem (None when
    healthy); ``lag`` the consumer lag per partition at scrape time."""

    def __init__(self, stage: str, *, problem: Callable[[], str | None] | None = None,
                 lag: Callable[[], Lag] | None = None,
                 out_labels: Sequence[str] = ()) -> None:
        self.stage = stage
        self.registry = CollectorRegistry()
        prefix = f"tweetner_{stage}"
        self.prefix = prefix
        self.tweets_in = Counter(f"{prefix}_tweets_in", f"Records the {stage} read",
                                 registry=self.registry)
        self.tweets_out = Counter(f"{prefix}_tweets_out", f"Records the {stage} passed on",
                                  list(out_labels), registry=self.registry)
        self.dead_letters = Counter(f"{prefix}_dead_letters", f"Records the {stage} dead-lettered, "
                                    "by the kind of reason", ["reason"], registry=self.registry)
        self.batch_latency = Histogram(f"{prefix}_batch_latency_seconds",
                                       f"Seconds per batch in the {stage}, first read to done",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.healthy = Gauge(f"{prefix}_healthy", "1 when /health answers ok, else 0",
                             registry=self.registry)
        self.healthy.set_function(lambda: 0.0 if problem is not None and problem() else 1.0)
        if lag is not None:
            self.registry.register(_LagCollector(f"{prefix}_consumer_lag", lag))

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.dead_letters.labels(reason_kind(reason)).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class LagBoard:
    """Consumer lag written by the consuming thread and read by scrapes from another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lag: dict[tuple[str, int], int] = {}

    def set(self, lag: Lag) -> None:
        with self._lock:
            self._lag = dict(lag)

    def get(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._lag)
