"""What the dashboard shows about the pipeline itself: stored rates and latency (PostgreSQL),
ingest/tag rates, consumer lag and dead letters (Kafka offsets and the dead-letter topic).

Both are read-only. PostgreSQL is always there (it is where the trends are); Kafka only while a
broker is configured, and an unreachable one is reported, never raised.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone

from sqlalchemy import Engine, text

from contracts.messages import DeadLetter
from contracts.topics import Topics
from tweetner.api.schemas import (DeadLetterSummary, GroupLag, KafkaStatus, StoredRate,
                                  StoreStatus)

log = logging.getLogger(__name__)

# Above this many rows the stored total is PostgreSQL's estimate: an exact count scans the table.
_EXACT_COUNT_LIMIT = 1_000_000
_RECENT_DEAD_LETTERS = 5
RATE_WINDOW_S = 60.0


def store_status(engine: Engine) -> StoreStatus:
    """Tweets stored per minute over the last 15 minutes, and ingest-to-store latency."""
    with engine.connect() as conn:
        estimate = conn.execute(text(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = 'tweets'::regclass")).scalar() or 0
        total = (estimate if estimate > _EXACT_COUNT_LIMIT
                 else conn.execute(text("SELECT count(*) FROM tweets")).scalar() or 0)
        per_minute = conn.execute(text(
            "SELECT date_trunc('minute', stored_at) AS minute, count(*) AS stored FROM tweets "
            "WHERE stored_at >= date_trunc('minute', now()) - interval '14 minutes' "
            "GROUP BY 1 ORDER BY 1")).all()
        recent = conn.execute(text(
            "SELECT max(stored_at) AS last_stored_at, "
            "count(*) FILTER (WHERE stored_at >= now() - interval '1 minute') AS last_minute, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ingested_at)) "
            "  FILTER (WHERE stored_at >= now() - interval '5 minutes') AS p50, "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ingested_at)) "
            "  FILTER (WHERE stored_at >= now() - interval '5 minutes') AS p95 "
            "FROM tweets WHERE stored_at >= now() - interval '15 minutes'")).one()
        last = recent.last_stored_at or conn.execute(text(
            "SELECT max(stored_at) FROM tweets")).scalar()
    return StoreStatus(
        tweets_stored=int(total), stored_last_minute=int(recent.last_minute or 0),
        last_stored_at=last,
        latency_p50_s=None if recent.p50 is None else float(recent.p50),
        latency_p95_s=None if recent.p95 is None else float(recent.p95),
        per_minute=[StoredRate(minute=r.minute, stored=int(r.stored)) for r in per_minute])


class StoreMonitor:
    """:func:`store_status`, computed at most every ``poll_s`` seconds for all clients: the
    tweets table has no index on ``stored_at``, so each computation scans it (cheap for a
    demo's table, not for months of tweets; every open dashboard polls)."""

    def __init__(self, engine: Engine, poll_s: float = 2.0) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._last: StoreStatus | None = None
        self._last_at = 0.0

    def status(self) -> StoreStatus:
        with self._lock:
            if self._last is None or time.monotonic() - self._last_at >= self.poll_s:
                self._last, self._last_at = store_status(self.engine), time.monotonic()
            return self._last


class KafkaMonitor:
    """Offsets of the pipeline's topics and groups, sampled at most every ``poll_s`` seconds.

    Rates are the change in a topic's end offsets over the samples of the last minute. The clients are made on
    first use and remade after a failure, so a broker that comes later is picked up.
    """

    def __init__(self, bootstrap: str, topics: Topics, groups: dict[str, str],
                 poll_s: float = 2.0) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.groups = groups  # group id -> the topic it consumes
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._consumer = None
        self._admin = None
        self._last: KafkaStatus | None = None
        self._last_at = 0.0
        # (time, ingested, tagged) samples of the last RATE_WINDOW_S: taggers produce whole
        # batches, so a rate over two close samples would swing between 0 and a burst.
        self._samples: deque[tuple[float, int, int]] = deque()

    def status(self) -> KafkaStatus:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last_at < self.poll_s:
                return self._last
            try:
                status = self._sample()
            except Exception as exc:  # noqa: BLE001 - any broker failure is a status, not a 500
                log.debug("kafka status failed", exc_info=True)
                self.close()
                first = str(exc).strip().splitlines()
                status = KafkaStatus(reachable=False, error=f"Kafka at {self.bootstrap}: "
                                     f"{first[0] if first else type(exc).__name__}")
            self._last, self._last_at = status, time.monotonic()
            return status

    def _clients(self):
        from kafka import KafkaAdminClient, KafkaConsumer

        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                request_timeout_ms=5000, bootstrap_timeout_ms=3000, consumer_timeout_ms=1000,
                fetch_max_wait_ms=100)
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                           request_timeout_ms=5000, bootstrap_timeout_ms=3000)
        return self._consumer, self._admin

    def _partitions(self, topic: str) -> list:
        from kafka import TopicPartition

        consumer, _ = self._clients()
        return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]

    def _offsets(self, parts: list) -> tuple[dict, dict]:
        """(first, end) offsets of ``parts``. The end is checked by reading the last batch:
        Tansu answers ListOffsets(latest) with the last batch's base offset + 1, not the high
        watermark, which would undercount every batch of more than one record. On Kafka the
        read finds what ListOffsets said."""
        consumer, _ = self._clients()
        begins = consumer.beginning_offsets(parts) if parts else {}
        ends = dict(consumer.end_offsets(parts)) if parts else {}
        probe = {tp: ends[tp] - 1 for tp in parts if ends[tp] > begins[tp]}
        if probe:
            consumer.assign(list(probe))
            for tp, offset in probe.items():
                consumer.seek(tp, offset)
            deadline = time.monotonic() + 2.0
            while probe and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=200).items():
                    if records:
                        ends[tp] = max(ends[tp], records[-1].offset + 1)
                        probe.pop(tp, None)
                        consumer.pause(tp)
            consumer.resume(*consumer.paused())
        return begins, ends

    def _sample(self) -> KafkaStatus:
        _, admin = self._clients()
        topics = {self.topics.tweets, self.topics.tagged, self.topics.deadletter,
                  *self.groups.values()}
        by_topic = {topic: self._partitions(topic) for topic in topics}
        begins, ends = self._offsets([tp for parts in by_topic.values() for tp in parts])

        def total(topic: str) -> int:
            return sum(ends[tp] for tp in by_topic[topic])

        ingested, tagged = total(self.topics.tweets), total(self.topics.tagged)
        now = time.monotonic()
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        ingested_rate = tagged_rate = None
        if self._samples and now > self._samples[0][0]:
            then, ingested_then, tagged_then = self._samples[0]
            ingested_rate = max(0, ingested - ingested_then) / (now - then)
            tagged_rate = max(0, tagged - tagged_then) / (now - then)
        self._samples.append((now, ingested, tagged))
        lags = []
        for group, topic in self.groups.items():
            # One group per request: brokers before OffsetFetch v8 (Tansu) take one at a time.
            committed = (admin.list_group_offsets({group: by_topic[topic]}).get(group, {})
                         if by_topic[topic] else {})
            lag = 0
            for tp in by_topic[topic]:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
                lag += max(0, ends[tp] - done)
            lags.append(GroupLag(group=group, topic=topic, lag=lag))
        dead_parts = by_topic[self.topics.deadletter]
        return KafkaStatus(reachable=True, ingested_total=ingested, tagged_total=tagged,
                           ingested_per_s=ingested_rate, tagged_per_s=tagged_rate, lag=lags,
                           dead_letters_total=sum(ends[tp] - begins[tp] for tp in dead_parts),
                           recent_dead_letters=self._recent_dead_letters(dead_parts, begins, ends))

    def _recent_dead_letters(self, parts: list, begins: dict, ends: dict) -> list[DeadLetterSummary]:
        consumer, _ = self._clients()
        wanted = {tp: max(begins.get(tp, 0), ends.get(tp, 0) - _RECENT_DEAD_LETTERS)
                  for tp in parts if ends.get(tp, 0) > begins.get(tp, 0)}
        if not wanted:
            return []
        consumer.assign(list(wanted))
        for tp, offset in wanted.items():
            consumer.seek(tp, offset)
        records = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(
                consumer.position(tp) < ends[tp] for tp in wanted):
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
        out = []
        for record in records:
            try:
                letter = DeadLetter.model_validate_json(record.value or b"")
                out.append(DeadLetterSummary(stage=letter.stage, reason=letter.reason,
                                             source=letter.source, failed_at=letter.failed_at))
            except ValueError:
                out.append(DeadLetterSummary(stage="?", reason="unreadable dead letter",
                                             source=f"{record.topic}/{record.partition}@{record.offset}"))
        out.sort(key=lambda d: d.failed_at or datetime.min.replace(tzinfo=timezone.utc),
                 reverse=True)
        return out[:_RECENT_DEAD_LETTERS]

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing a broken client
                    log.debug("closing a kafka client failed", exc_info=True)
        self._consumer = self._admin = None
