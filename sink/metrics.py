"""The sink's Prometheus metrics (served with its health by sink.http).

On top of every stage's metrics (contracts.metrics): ``tweets_out`` counts tweets stored, with
the name and version of the model that tagged them as labels;
``tweetner_sink_tweets_stored_total{outcome}`` splits them into inserted, replaced (a
correction) and unchanged (a re-read); ``tweetner_sink_mentions_stored_total``;
``tweetner_sink_write_failures_total`` (each failed PostgreSQL attempt, retried with backoff).
Lag is the tagged topic's end per partition minus what the sink has stored (committed), or
minus the first offset it read there before its first commit.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from prometheus_client import Counter

from contracts.messages import record_source
from contracts.metrics import MODEL_LABELS, LagBoard, StageMetrics


class SinkMetrics(StageMetrics):
    def __init__(self, problem: Callable[[], str | None]) -> None:
        self.lag_board = LagBoard()
        super().__init__("sink", problem=problem, lag=self.lag_board.get, out_labels=MODEL_LABELS)
        self.stored = Counter("tweetner_sink_tweets_stored", "Tweets written, by outcome",
                              ["outcome"], registry=self.registry)
        self.mentions = Counter("tweetner_sink_mentions_stored", "Mention rows inserted",
                                registry=self.registry)
        self.write_failures = Counter("tweetner_sink_write_failures",
                                      "Failed PostgreSQL attempts (each batch is retried)",
                                      registry=self.registry)
        # Per (topic, partition): the offset up to which records are stored (committed).
        self._done: dict[tuple[str, int], int] = {}

    def batch_stored(self, records: Sequence[Any], good: Iterable[tuple[Any, Any]],
                     letters: Sequence[Any], written: Any, seconds: float,
                     offsets: Mapping[Any, int]) -> None:
        """After a batch is stored and its dead letters sent. ``good``: (record, TaggedTweet)
        pairs, those PostgreSQL refused among ``letters``; ``offsets``: tp -> next offset."""
        self.tweets_in.inc(len(records))
        refused = {letter.source for letter in letters}
        by_model: dict[tuple[str, str], int] = {}
        for record, tweet in good:
            if record_source(record) in refused:
                continue
            key = (tweet.model_name, tweet.model_version)
            by_model[key] = by_model.get(key, 0) + 1
        for (name, version), count in by_model.items():
            self.tweets_out.labels(name, version).inc(count)
        self.dead_lettered(letter.reason for letter in letters)
        for outcome in ("inserted", "replaced", "unchanged"):
            self.stored.labels(outcome).inc(getattr(written, f"tweets_{outcome}", 0))
        self.mentions.inc(getattr(written, "mentions_inserted", 0))
        self.batch_latency.observe(seconds)
        for tp, offset in offsets.items():
            key = (tp.topic, tp.partition)
            self._done[key] = max(self._done.get(key, 0), offset)

    def polled(self, consumer: Any, polled: Mapping[Any, Sequence[Any]]) -> None:
        """After each poll, in the consuming thread (the consumer is not thread-safe)."""
        for tp, records in polled.items():
            if records:
                self._done.setdefault((tp.topic, tp.partition), records[0].offset)
        lag = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            done = self._done.get((tp.topic, tp.partition))
            if highwater is not None and done is not None:
                lag[(tp.topic, tp.partition)] = max(0, int(highwater) - done)
        self.lag_board.set(lag)
