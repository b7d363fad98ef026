"""The sink service: tagged topic -> PostgreSQL (+ Redis), offsets committed only after storage.

Delivery is at-least-once and the writes are idempotent, so the only rule that matters is the
order: PostgreSQL commit, then offset commit. A crash between the two replays a batch that then
changes nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy.exc import DBAPIError

from contracts.decoding import decode_records
from contracts.messages import TaggedTweet, record_source
from sink.metrics import SinkMetrics
from sink.delivery import (Backoff, DeadLetterProducer, Stopped, close_clients, commit_offsets,
                           describe, next_offsets, write_with_fallback)
from sink.settings import SinkSettings
from sink.store import TrendStore, store_for
from sink.writer import WriteResult

log = logging.getLogger(__name__)

# Consecutive failed attempts on one batch after which the sink says it cannot make progress.
STUCK_AFTER_FAILURES = 3


@dataclass
class SinkStats:
    records: int = 0
    batches: int = 0
    tweets_inserted: int = 0
    tweets_replaced: int = 0
    tweets_unchanged: int = 0
    mentions_inserted: int = 0
    dead_letters: int = 0
    write_failures: int = 0
    commits: int = 0
    commit_failures: int = 0

    def add(self, result: WriteResult) -> None:
        self.tweets_inserted += result.tweets_inserted
        self.tweets_replaced += result.tweets_replaced
        self.tweets_unchanged += result.tweets_unchanged
        self.mentions_inserted += result.mentions_inserted


@dataclass
class _Pending:
    """A batch handed to a writer thread, until its offsets are committed."""

    future: Future
    batch: Sequence[Any]
    good: list
    ids: frozenset[str]
    started: float


class SinkService:
    """Consumes ``settings.tagged_topic`` in group ``settings.sink_group``; call :meth:`run`.

    ``stop()`` may be called from another thread or a signal handler; ``run`` then returns after
    the batch in hand is written (or abandoned uncommitted if PostgreSQL is still down).
    """

    def __init__(self, settings: SinkSettings, store: TrendStore | None = None) -> None:
        self.settings = settings
        self.stats = SinkStats()
        self._stop = threading.Event()
        self._store = store
        self._consumer: Any = None
        self._dead_letters: DeadLetterProducer | None = None
        # Failures in a row on the batch in hand, and where that batch starts (for health).
        self._failures_in_a_row = 0
        self._stuck_reason: str | None = None
        self._batch_start = ""
        self.metrics = SinkMetrics(problem=lambda: self._stuck_reason)
        # Store batches while the consumer's thread reads the next (see _flush); made by run().
        self._writer: ThreadPoolExecutor | None = None
        self._pending: deque[_Pending] = deque()

    # lifecycle ----------------------------------------------------------------------------
    def start(self, idle_exit_s: float | None = None) -> threading.Thread:
        """Run in a background thread (embedded stack, tests); stop() then join() it."""
        self._thread = threading.Thread(target=self.run, kwargs={"idle_exit_s": idle_exit_s},
                                        name="tweetner-sink", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, join_timeout_s: float | None = None) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if (join_timeout_s is not None and thread is not None
                and thread is not threading.current_thread()):
            thread.join(join_timeout_s)

    def health(self) -> dict[str, Any]:
        """``ok``, or ``unhealthy`` with one line saying why no batch is getting stored."""
        if self._stuck_reason is not None:
            return {"status": "unhealthy", "reason": self._stuck_reason}
        return {"status": "ok", "reason": None}

    @property
    def store(self) -> TrendStore:
        if self._store is None:
            self._store = store_for(self.settings)
        return self._store

    def _connect(self) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        s = self.settings
        service = self

        class _Revoked(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # The batch being stored commits while the partitions are still ours; the new
                # owner re-reads from the last commit, and writes are idempotent, so dropping our
                # unwritten copies is safe and avoids committing offsets we no longer own.
                service._complete_pending()
                service._drop_partitions(set(revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                log.info("sink assigned %d partitions", len(assigned))

        self._consumer = KafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=s.sink_group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=s.batch_size,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            session_timeout_ms=s.session_timeout_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            client_id=f"tweetner-sink-{s.sink_group}")
        self._consumer.subscribe([s.tagged_topic], listener=_Revoked())
        self._dead_letters = DeadLetterProducer(s.kafka_bootstrap, s.deadletter_topic)

    def close(self) -> None:
        close_clients(self._consumer)
        self._consumer = None
        if self._dead_letters is not None:
            self._dead_letters.close()

    # main loop ----------------------------------------------------------------------------
    def run(self, idle_exit_s: float | None = None) -> SinkStats:
        """Consume until stop(); with ``idle_exit_s``, also return once nothing arrived for that
        long and everything read is committed (tests, one-shot drains)."""
        if self.store.cache is not None:
            self.store.cache.resync()  # never raises; a failure leaves it dirty for later
        self._connect()
        self._buffer: list[Any] = []
        self._pending = deque()
        self._writer = ThreadPoolExecutor(max_workers=self.settings.writers,
                                          thread_name_prefix="sink-writer")
        first_at = 0.0
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                wait = self.settings.flush_interval_s
                if self._buffer:
                    wait = max(0.0, first_at + self.settings.flush_interval_s - time.monotonic())
                polled = self._consumer.poll(timeout_ms=int(wait * 1000),
                                             max_records=self.settings.batch_size)
                self.metrics.polled(self._consumer, polled)
                for records in polled.values():
                    if records and not self._buffer:
                        first_at = time.monotonic()
                    self._buffer.extend(records)
                # Idle time counts only once partitions are assigned: a group join takes seconds.
                if polled or not self._consumer.assignment():
                    idle_since = time.monotonic()
                due = self._buffer and (len(self._buffer) >= self.settings.batch_size
                                        or time.monotonic() - first_at >= self.settings.flush_interval_s)
                if due:
                    batch, self._buffer = self._buffer, []
                    self._flush(batch)
                elif self._pending:
                    # Nothing to overlap with: commit what is stored without delay.
                    self._complete_pending(wait=not polled)
                if (idle_exit_s is not None and not self._buffer and not self._pending
                        and time.monotonic() - idle_since >= idle_exit_s):
                    break
            if self._buffer:
                self._flush(self._buffer)
            self._complete_pending()
        except Stopped:
            log.warning("sink stopped with an unwritten batch; its offsets stay uncommitted")
        finally:
            if self._pending:
                # Leaving on an error: let the batches being stored finish (or give up, once
                # stopped) before their clients close; their offsets stay uncommitted.
                self._stop.set()
                for pending in self._pending:
                    pending.future.exception()
                self._pending.clear()
            self._writer.shutdown(wait=True)
            self.close()
        return self.stats

    def _drop_partitions(self, revoked: set[Any]) -> None:
        buffer = getattr(self, "_buffer", [])
        self._buffer = [m for m in buffer if (m.topic, m.partition) not in
                        {(tp.topic, tp.partition) for tp in revoked}]

    # one batch ----------------------------------------------------------------------------
    # A batch is decoded on the consumer's thread, then stored (PostgreSQL, dead letters) on a
    # writer thread while the next one is polled and decoded: the sink's CPU and PostgreSQL's
    # work overlap instead of taking turns. With ``writers`` > 1, PostgreSQL stores that many
    # batches at once (one connection each) when they share no tweet id, so the final state is
    # the one storing them in order gives (see _may_overlap). Offsets are committed on the
    # consumer's thread (the client is not thread-safe) once a batch and every batch before it
    # are stored, oldest first, and before partitions are given up in a rebalance.
    def _flush(self, batch: Sequence[Any]) -> None:
        good, dead = decode_records(batch, TaggedTweet, "sink")
        ids = frozenset(rec.id for _, rec in good)
        while self._pending and (len(self._pending) >= self.settings.writers
                                 or not self._may_overlap(ids)):
            self._complete_oldest()
        self._complete_pending(wait=False)
        self._batch_start = record_source(batch[0])
        assert self._writer is not None, "_flush runs inside run()"
        self._pending.append(_Pending(self._writer.submit(self._store_batch, good, dead), batch,
                                      good, ids, time.perf_counter()))

    def _may_overlap(self, ids: frozenset[str]) -> bool:
        """A batch may be stored beside those in flight when no tweet is in two of them: then
        their transactions touch different tweet and mention rows, and the trend buckets they
        share are sums, the same in any order. (Two records of one tweet keep their order: the
        later retag wins, as when one writer stores them.)"""
        return all(ids.isdisjoint(p.ids) for p in self._pending)

    def _store_batch(self, good: list, dead: list) -> tuple[WriteResult, list]:
        from kafka.errors import KafkaError

        producer = self._dead_letters
        assert producer is not None, "_flush runs after _connect"
        s = self.settings
        outage = Backoff(s.retry_initial_s, s.retry_max_s)
        written, rejected = outage.run(lambda: write_with_fallback(self.store, good, "sink"),
                                       (DBAPIError,), "PostgreSQL write", self._stop,
                                       on_failure=self._count_write_failure)
        letters = [letter for _, letter in dead] + rejected
        # The batch's offsets wait for its dead letters: a lost one must not be committed past.
        outage.run(lambda: producer.send(letters), (KafkaError,), "dead-letter produce",
                   self._stop)
        self._failures_in_a_row, self._stuck_reason = 0, None
        return written, letters

    def _complete_pending(self, wait: bool = True) -> None:
        """Commits the offsets of the stored batches, oldest first; with ``wait``, waits for
        every batch in flight, otherwise stops at the first one still being stored."""
        while self._pending and (wait or self._pending[0].future.done()):
            self._complete_oldest()

    def _complete_oldest(self) -> None:
        """Waits for the oldest batch in flight, then commits its offsets (raises Stopped when
        it was abandoned: its offsets, and those of every later batch, stay uncommitted)."""
        pending = self._pending.popleft()
        batch, good, started = pending.batch, pending.good, pending.started
        try:
            written, letters = pending.future.result()
        except BaseException:
            # A later batch must not commit past this one: let them finish, commit none.
            self._stop.set()
            for later in self._pending:
                later.future.exception()
            self._pending.clear()
            raise
        self.stats.dead_letters += len(letters)
        self.stats.records += len(batch)
        self.stats.batches += 1
        self.stats.add(written)
        offsets = next_offsets(batch)
        committed = commit_offsets(self._consumer, offsets)
        self.metrics.batch_stored(batch, good, letters, written, time.perf_counter() - started,
                                  offsets)
        if committed:
            self.stats.commits += 1
        else:
            # Typically a rebalance: the batch is stored and will be re-read and found unchanged.
            self.stats.commit_failures += 1

    def _count_write_failure(self, exc: BaseException) -> None:
        self.stats.write_failures += 1
        self.metrics.write_failures.inc()
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= STUCK_AFTER_FAILURES:
            reason = (f"PostgreSQL write failed {self._failures_in_a_row} times in a row at "
                      f"{self._batch_start}: {describe(exc)}")
            if self._stuck_reason is None:
                log.critical("sink cannot make progress: %s", reason)
            self._stuck_reason = reason
