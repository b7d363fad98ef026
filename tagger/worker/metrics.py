"""The tagger worker's Prometheus metrics (served by Faust's web server at /metrics).

On top of every stage's metrics (contracts.metrics), with the model's name and version as
labels of what it produced: ``tweetner_tagger_model_latency_seconds`` (the model's part of a
batch), ``tweetner_tagger_send_retries_total`` and ``tweetner_tagger_model_info`` (1, labels
only).
"""
from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram

from contracts.metrics import LATENCY_BUCKETS, MODEL_LABELS, Lag, StageMetrics


class TaggerMetrics(StageMetrics):
    def __init__(self, model_name: str, model_version: str, *,
                 problem: Callable[[], str | None], lag: Callable[[], Lag]) -> None:
        super().__init__("tagger", problem=problem, lag=lag, out_labels=MODEL_LABELS)
        self.model = (model_name, model_version)
        self.model_latency = Histogram("tweetner_tagger_model_latency_seconds",
                                       "Seconds the model took per batch", list(MODEL_LABELS),
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.send_retries = Counter("tweetner_tagger_send_retries",
                                    "Failed sends of a batch's outputs (each is retried)",
                                    registry=self.registry)
        info = Gauge("tweetner_tagger_model_info", "The model this worker runs (always 1)",
                     list(MODEL_LABELS), registry=self.registry)
        info.labels(*self.model).set(1)

    def batch_done(self, n_in: int, n_tagged: int, dead_reasons: Iterable[str],
                   batch_s: float, model_s: float) -> None:
        self.tweets_in.inc(n_in)
        self.tweets_out.labels(*self.model).inc(n_tagged)
        self.dead_lettered(dead_reasons)
        self.batch_latency.observe(batch_s)
        self.model_latency.labels(*self.model).observe(model_s)
