"""Replay and backfill: re-consume a topic range and store it again through the sink's write path.

One job per :class:`ReplayService`: partitions are assigned by hand (no group membership, so a
replay never steals partitions from the live sink or tagger), sought to their start
(tweetner.replay.positions), read to an end captured at start (or ``to_time``), tagged again with
the tagging core when asked (tagger.tagging) and stored with the sink's delivery steps
(sink.delivery). The writer is idempotent per (tweet, model version), so replaying the same
version changes nothing and a new version replaces the tweet's current mentions and moves its
trend counts.

Progress is committed to the replay's own consumer group after every stored batch (PostgreSQL
first, then dead letters, then the offsets), which is what ``resume`` starts from.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from kafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError

from contracts.decoding import decode_records
from contracts.messages import TaggedTweet, Tweet
from sink.delivery import (Backoff, DeadLetterProducer, GaveUp, Stopped, close_clients,
                           commit_offsets, write_with_fallback)
from sink.settings import SinkSettings
from sink.store import TrendStore, store_for
from tagger.tagging import tag_records
from tweetner.replay.options import ReplayOptions, ReplaySummary
from tweetner.replay.positions import PartitionPosition, RangePlanner, ReplayError, epoch_ms, learn_ends

log = logging.getLogger(__name__)

__all__ = ["ReplayError", "ReplayService"]


class ReplayService:
    """Run one replay with :meth:`run`; :meth:`stop` (any thread, signal handler) ends it after
    the batch in hand, with that batch stored and committed."""

    def __init__(self, options: ReplayOptions, settings: SinkSettings,
                 store: TrendStore | None = None,
                 tagger_factory: Callable[[], Any] | None = None) -> None:
        self.options = options
        self.settings = settings
        self._store = store
        self._tagger_factory = tagger_factory
        self._tagger: Any = None
        self._stop = threading.Event()
        self._consumer: Any = None
        self._dead_letters = DeadLetterProducer(settings.kafka_bootstrap, settings.deadletter_topic)
        self._deltas: Counter[tuple[datetime, str, str]] = Counter()
        self._from_ms = epoch_ms(options.from_time)
        self._to_ms = epoch_ms(options.to_time)
        self.summary = ReplaySummary(topic=options.topic, group=options.consumer_group,
                                     mode="retag" if options.retag else "resink",
                                     dry_run=options.dry_run)

    # lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def store(self) -> TrendStore:
        if self._store is None:
            self._store = store_for(self.settings)
        return self._store

    def run(self) -> ReplaySummary:
        started = time.monotonic()
        if self.options.retag and not self.options.dry_run:
            # Before touching Kafka: a model that cannot load should fail fast.
            self._tagger = self._load_tagger()
            self.summary.model_version = self._tagger.model_version
        try:
            self._connect()
            planner = RangePlanner(self._consumer, self.options)
            parts = planner.plan()
            self.summary.time_lookup = planner.time_lookup
            self._loop(parts)
        finally:
            self.summary.seconds = round(time.monotonic() - started, 3)
            self.summary.trend_buckets_changed = sum(1 for n in self._deltas.values() if n)
            self._close()
        return self.summary

    def _load_tagger(self) -> Any:
        if self._tagger_factory is None:
            raise ReplayError("retag needs a model (tagger_factory)")
        try:
            return self._tagger_factory()
        except Exception as exc:
            raise ReplayError(f"cannot load the model: {type(exc).__name__}: {exc}") from exc

    def _connect(self) -> None:
        from kafka import KafkaConsumer

        self._consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.options.consumer_group, enable_auto_commit=False,
            # Only reached when a position falls out of range, e.g. retention deleted it while
            # we read: moving to the new log start loses nothing that still exists.
            auto_offset_reset="earliest",
            max_poll_records=self.options.batch_size,
            client_id=f"tweetner-replay-{self.options.topic}")

    def _close(self) -> None:
        close_clients(self._consumer)
        self._consumer = None
        self._dead_letters.close()

    def _finish(self, p: PartitionPosition, why: str) -> None:
        if not p.done:
            p.done, p.stopped_by = True, why
            self._consumer.pause(p.tp)

    # the loop -----------------------------------------------------------------------------
    def _loop(self, parts: dict[Any, PartitionPosition]) -> None:
        from tqdm import tqdm

        bar = tqdm(total=sum(p.remaining() for p in parts.values()), unit="rec",
                   desc=f"replay {self.options.topic}", disable=None if self.options.progress else True,
                   dynamic_ncols=True)
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                pending = [p for p in parts.values() if not p.done]
                if not pending:
                    break
                polled = self._consumer.poll(timeout_ms=200, max_records=self.options.batch_size)
                learn_ends(self._consumer, parts)
                read_before = self.summary.records_read
                batch: list[Any] = []
                for tp, msgs in polled.items():
                    self._take(parts[tp], msgs, batch)
                if polled:
                    idle_since = time.monotonic()
                self._process(batch)
                self._commit(parts)
                for p in pending:
                    if p.end is not None and p.next >= p.end:
                        self._finish(p, "end")
                if time.monotonic() - idle_since >= self.options.idle_timeout_s:
                    left = [p for p in parts.values() if not p.done]
                    log.warning("nothing arrived for %.0fs; stopping %d partition(s) with %d "
                                "records of lag", self.options.idle_timeout_s, len(left),
                                sum(p.remaining() for p in left))
                    for p in left:
                        self._finish(p, "idle")
                bar.total = self.summary.records_read + sum(
                    p.remaining() for p in parts.values() if not p.done)
                bar.update(self.summary.records_read - read_before)
                bar.set_postfix(lag=sum(p.remaining() for p in parts.values() if not p.done),
                                dead=self.summary.dead_letters, refresh=True)
        except Stopped:
            log.warning("replay stopped with an unwritten batch; its offsets stay uncommitted")
        finally:
            bar.close()
            self.summary.interrupted = any(not p.done for p in parts.values())
            self.summary.partitions = {
                p.tp.partition: {"start": p.start, "end": p.end, "next": p.next,
                                 "stopped_by": p.stopped_by} for p in parts.values()}

    def _take(self, p: PartitionPosition, msgs: Sequence[Any], batch: list[Any]) -> None:
        for msg in msgs:
            if p.done:
                return
            if p.end is not None and msg.offset >= p.end:
                self._finish(p, "end")
                return
            if msg.offset < p.next:
                continue  # re-read after an out-of-range reset; already handled
            if p.verify:
                p.verify = False
                if self._from_ms is not None and msg.timestamp >= self._from_ms:
                    log.warning("%s: the broker's offsets_for_times answer is not the first "
                                "record at or after --from; scanning from the beginning", p.tp)
                    self.summary.time_lookup = "mixed" if self.summary.time_lookup == "broker" \
                        else "scan"
                    p.start = p.next = p.beginning
                    self._consumer.seek(p.tp, p.beginning)
                    return
            if self._to_ms is not None and msg.timestamp > self._to_ms:
                self._finish(p, "to")
                return
            p.next = msg.offset + 1
            self.summary.records_read += 1
            if self._from_ms is not None and msg.timestamp < self._from_ms:
                self.summary.records_skipped += 1
                continue
            batch.append(msg)

    # one batch ----------------------------------------------------------------------------
    def _process(self, batch: Sequence[Any]) -> None:
        if not batch:
            return
        if self.options.dry_run:
            valid, dead = decode_records(batch, Tweet if self.options.retag else TaggedTweet, "replay")
            self.summary.records_valid += len(valid)
            self.summary.dead_letters += len(dead)
            return
        if self.options.retag:
            tagged = tag_records(batch, self._tagger, "replay")
            good, dead = tagged.tagged, tagged.dead
        else:
            good, dead = decode_records(batch, TaggedTweet, "replay")
        outage = Backoff(self.options.retry_initial_s, 30.0, self.options.write_attempts)
        try:
            result, rejected = outage.run(lambda: write_with_fallback(self.store, good, "replay"),
                                          (DBAPIError,), "PostgreSQL write", self._stop)
        except GaveUp as exc:
            raise ReplayError(f"{exc}; progress so far is committed, rerun with --resume") from exc
        for d in result.deltas:
            self._deltas[(d.bucket_start, d.label, d.entity)] += d.delta
        self.summary.add(result)
        letters = [letter for _, letter in dead] + rejected
        try:
            # A dead letter that cannot be delivered must not be committed past: fail the job
            # before this batch's offsets are committed (its rows are stored; a rerun is a no-op).
            self._dead_letters.send(letters)
        except KafkaError as exc:
            raise ReplayError(f"cannot produce dead letters to {self.settings.deadletter_topic}: "
                              f"{exc}; rerun with --resume") from exc
        self.summary.dead_letters += len(letters)

    def _commit(self, parts: dict[Any, PartitionPosition]) -> None:
        if self.options.dry_run:
            return
        moved = {p.tp: p.next for p in parts.values() if p.next != p.committed}
        # A refused commit only costs resume a re-read that changes nothing; retried next batch.
        if moved and commit_offsets(self._consumer, moved):
            for tp, offset in moved.items():
                parts[tp].committed = offset
