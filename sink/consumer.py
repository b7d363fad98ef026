"""The sink service: tagged topic -> PostgreSQL (+ Redis), offsets committed only after storage.

Delivery is at-least-once and the writes are idempotent, so the only rule that matters is the
order: PostgreSQL commit, then offset commit. A crash between the two replays a batch that then
changes nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from sink.settings import SinkSettings
from sink.store import TrendStore, store_for
from sink.writer import WriteResult
from tweetner.messages import DeadLetter, TaggedTweet

log = logging.getLogger(__name__)


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


class _Stopped(Exception):
    """Raised inside a flush when stop() was called while waiting for PostgreSQL."""


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
        self._producer: Any = None

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

    @property
    def store(self) -> TrendStore:
        if self._store is None:
            self._store = store_for(self.settings)
        return self._store

    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        s = self.settings
        service = self

        class _Revoked(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                # The new owner re-reads from the last commit; writes are idempotent, so dropping
                # our uncommitted copies is safe and avoids committing offsets we no longer own.
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
        self._producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all",
                                       retries=5, linger_ms=5)

    def close(self) -> None:
        close_clients(self._consumer, self._producer)
        self._consumer = self._producer = None

    # main loop ----------------------------------------------------------------------------
    def run(self, idle_exit_s: float | None = None) -> SinkStats:
        """Consume until stop(); with ``idle_exit_s``, also return once nothing arrived for that
        long and everything read is committed (tests, one-shot drains)."""
        if self.store.cache is not None:
            self.store.cache.resync()  # never raises; a failure leaves it dirty for later
        self._connect()
        self._buffer: list[Any] = []
        first_at = 0.0
        idle_since = time.monotonic()
        try:
            while not self._stop.is_set():
                wait = self.settings.flush_interval_s
                if self._buffer:
                    wait = max(0.0, first_at + self.settings.flush_interval_s - time.monotonic())
                polled = self._consumer.poll(timeout_ms=int(wait * 1000),
                                             max_records=self.settings.batch_size)
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
                if (idle_exit_s is not None and not self._buffer
                        and time.monotonic() - idle_since >= idle_exit_s):
                    break
            if self._buffer:
                self._flush(self._buffer)
        except _Stopped:
            log.warning("sink stopped with an unwritten batch; its offsets stay uncommitted")
        finally:
            self.close()
        return self.stats

    def _drop_partitions(self, revoked: set[Any]) -> None:
        buffer = getattr(self, "_buffer", [])
        self._buffer = [m for m in buffer if (m.topic, m.partition) not in
                        {(tp.topic, tp.partition) for tp in revoked}]

    # one batch ----------------------------------------------------------------------------
    def _flush(self, batch: Sequence[Any]) -> None:
        good: list[TaggedTweet] = []
        dead: list[DeadLetter] = []
        for msg in batch:
            try:
                if msg.value is None:
                    raise ValueError("empty value")
                good.append(TaggedTweet.model_validate_json(msg.value))
            except (ValidationError, ValueError) as exc:
                dead.append(self._dead_letter(msg, f"invalid TaggedTweet: {exc}"))
        written = self._retrying(lambda: self._write(good, batch, dead))
        self._send_dead_letters(dead)
        self.stats.records += len(batch)
        self.stats.batches += 1
        self.stats.add(written)
        self._commit(batch)

    def _dead_letter(self, msg: Any, reason: str) -> DeadLetter:
        return DeadLetter.for_payload("sink", reason[:1000], msg.value,
                                      source=f"{msg.topic}/{msg.partition}/{msg.offset}",
                                      position=msg.offset)

    def _write(self, good: list[TaggedTweet], batch: Sequence[Any],
               dead: list[DeadLetter]) -> WriteResult:
        try:
            return self.store.write(good)
        except (DataError, IntegrityError) as exc:
            if exc.connection_invalidated:
                raise
            # A value PostgreSQL refuses (e.g. a NUL byte) would fail the batch forever: write
            # record by record and dead-letter only the ones that fail on their own.
            log.warning("batch rejected by PostgreSQL (%s); writing records one by one",
                        type(exc).__name__)
            by_id = {}
            for msg in batch:
                by_id.setdefault(self._id_of(msg), msg)
            result = WriteResult()
            for rec in good:
                try:
                    result = result.merge(self.store.write([rec]))
                except (DataError, IntegrityError) as one:
                    if one.connection_invalidated:
                        raise
                    dead.append(self._dead_letter(by_id.get(rec.id, batch[0]),
                                                  f"rejected by PostgreSQL: {one.orig}"))
            return result

    @staticmethod
    def _id_of(msg: Any) -> str | None:
        try:
            return TaggedTweet.model_validate_json(msg.value).id
        except Exception:
            return None

    def _retrying(self, action: Callable[[], WriteResult]) -> WriteResult:
        delay = self.settings.retry_initial_s
        while True:
            try:
                return action()
            except DBAPIError as exc:
                self.stats.write_failures += 1
                log.warning("PostgreSQL write failed (%s); retrying in %.1fs, offsets not committed",
                            str(exc.orig).strip().splitlines()[0] if exc.orig else exc, delay)
            if self._stop.wait(delay):
                raise _Stopped()
            delay = min(delay * 2, self.settings.retry_max_s)

    def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        from kafka.errors import KafkaError

        if not dead:
            return
        delay = self.settings.retry_initial_s
        while True:
            try:
                futures = [self._producer.send(self.settings.deadletter_topic,
                                               value=d.model_dump_json().encode()) for d in dead]
                self._producer.flush()
                for f in futures:
                    f.get(timeout=30)
                break
            except KafkaError as exc:
                # The batch's offsets wait for its dead letters: a lost one must not be committed
                # past. Re-sending after a partial failure can duplicate a dead letter; harmless.
                log.warning("dead-letter produce failed (%s); retrying in %.1fs", exc, delay)
            if self._stop.wait(delay):
                raise _Stopped()
            delay = min(delay * 2, self.settings.retry_max_s)
        self.stats.dead_letters += len(dead)

    def _commit(self, batch: Sequence[Any]) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        last: dict[TopicPartition, int] = {}
        for msg in batch:
            tp = TopicPartition(msg.topic, msg.partition)
            last[tp] = max(last.get(tp, -1), msg.offset)
        offsets = {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in last.items()}
        try:
            self._consumer.commit(offsets)
            self.stats.commits += 1
        except KafkaError as exc:
            # Typically a rebalance: the batch is stored and will be re-read and found unchanged.
            self.stats.commit_failures += 1
            log.warning("offset commit failed (%s); the batch will be redelivered harmlessly", exc)


def close_clients(*clients: object) -> None:
    """Close Kafka clients, best effort: the broker may be gone already."""
    for client in clients:
        if client is not None:
            try:
                client.close()  # type: ignore[attr-defined]
            except Exception:
                log.debug("close failed", exc_info=True)
