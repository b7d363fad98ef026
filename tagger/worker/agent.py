"""The tagger agent's work, separate from Faust's wiring (tagger/worker/app.py) so it can be tested alone.

A batch of raw Kafka values becomes tagged tweets and dead letters through the tagging core
(tagger.tagging, shared with replay): values are parsed there with pydantic (never by a Faust
deserializer, whose failure can silently end a ``take()`` agent), and the core runs in a worker
thread so the event loop keeps heartbeating.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Sequence

from tagger.tagging import TaggedBatch, TextTagger, tag_records
from tagger.worker.settings import AgentSettings

log = logging.getLogger(__name__)


def load_model(settings: AgentSettings) -> TextTagger:
    """Build the model with ``settings.model_factory`` ("module:attr.path")."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    module_name, _, attr_path = settings.model_factory.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        target = getattr(target, part)
    return target(model_dir=settings.model_dir, device=settings.device,
                  precision=settings.precision)


@dataclass(frozen=True)
class InputRecord:
    """A record of the tweets topic as the agent hands it to the tagging core."""

    value: bytes | None
    topic: str
    partition: int
    offset: int


class BatchTagger:
    """Runs the tagging core on one micro-batch in ``executor``, off the event loop."""

    def __init__(self, model: TextTagger, executor: Executor) -> None:
        self.model = model
        self.executor = executor

    async def tag(self, records: Sequence[InputRecord]) -> TaggedBatch:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, tag_records, records, self.model, "tagger")


class AgentMetrics:
    """Counters and recent rates for the /metrics view; only touched from the event loop."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.started = time.time()
        self.window_s = window_s
        self.tweets_total = 0
        self.tagged_total = 0
        self.dead_letters_total = 0
        self.batches_total = 0
        self.send_retries_total = 0
        self.last_batch_size = 0
        self.last_batch_latency_s = 0.0
        self.last_model_latency_s = 0.0
        self.max_batch_latency_s = 0.0
        # (finished_at, tweets, batch latency) of recent batches, for rates over the window.
        self._recent: deque[tuple[float, int, float]] = deque()
        # Next offset to process per (topic, partition), for lag.
        self.next_offsets: dict[tuple[str, int], int] = {}

    def record_batch(self, n: int, tagged: int, dead: int, latency_s: float, model_s: float) -> None:
        now = time.time()
        self.tweets_total += n
        self.tagged_total += tagged
        self.dead_letters_total += dead
        self.batches_total += 1
        self.last_batch_size = n
        self.last_batch_latency_s = latency_s
        self.last_model_latency_s = model_s
        self.max_batch_latency_s = max(self.max_batch_latency_s, latency_s)
        self._recent.append((now, n, latency_s))
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()

    def snapshot(self, lag: dict[str, int] | None = None) -> dict[str, Any]:
        now = time.time()
        recent = [r for r in self._recent if r[0] >= now - self.window_s]
        span = min(self.window_s, now - self.started) or 1e-9
        n_recent = sum(r[1] for r in recent)
        return {
            "uptime_s": round(now - self.started, 1),
            "tweets_total": self.tweets_total,
            "tagged_total": self.tagged_total,
            "dead_letters_total": self.dead_letters_total,
            "batches_total": self.batches_total,
            "send_retries_total": self.send_retries_total,
            "tweets_per_second": round(n_recent / span, 2),
            "batch_size_avg": round(n_recent / len(recent), 2) if recent else 0.0,
            "batch_size_last": self.last_batch_size,
            "batch_latency_ms_avg": round(1000 * sum(r[2] for r in recent) / len(recent), 1) if recent else 0.0,
            "batch_latency_ms_last": round(1000 * self.last_batch_latency_s, 1),
            "batch_latency_ms_max": round(1000 * self.max_batch_latency_s, 1),
            "model_latency_ms_last": round(1000 * self.last_model_latency_s, 1),
            "consumer_lag": lag or {},
            "consumer_lag_total": sum((lag or {}).values()),
        }


class TopicWatch:
    """Compares the broker's partition counts of the topics the worker reads and writes with
    the count it was configured for, so health can say when they changed under it.

    Faust keeps the partition count it started with: after the topics are re-created with
    another count, sends keyed for partitions that no longer exist vanish while the worker
    reports progress. Nothing here fixes that in place; :meth:`check` names the problem and the
    app stops the worker, whose restart reads the topics afresh (or fails again, loudly).
    """

    def __init__(self, bootstrap: str, expected: dict[str, int]) -> None:
        self.bootstrap = bootstrap
        self.expected = expected
        self._client: Any = None
        self.problem: str | None = None

    def check(self) -> str | None:
        """Blocking (a metadata request): run it off the event loop. None when all is well,
        else one line saying why the worker cannot make progress."""
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        try:
            if self._client is None:
                self._client = KafkaConsumer(bootstrap_servers=self.bootstrap,
                                             client_id="tweetner-tagger-topic-watch")
            present = self._client.topics()  # a fresh metadata request, not the cache
            problems = []
            for topic, count in sorted(self.expected.items()):
                if topic not in present:
                    problems.append(f"topic {topic} vanished")
                    continue
                actual = len(self._client.partitions_for_topic(topic) or ())
                if actual != count:
                    problems.append(f"topic {topic} has {actual} partitions, worker assumes {count}")
        except KafkaError as exc:
            # The broker being away is an outage the consumer already retries; not a verdict.
            log.debug("topic watch could not reach the broker: %s", exc)
            return self.problem
        self.problem = "; ".join(problems) or None
        return self.problem

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
