"""Replay and backfill: re-consume a topic range and store it again through the sink's write path.

One job per :class:`ReplayService`: partitions are assigned by hand (no group membership, so a
replay never steals partitions from the live sink or tagger), sought to their start, read to an
end captured at start (or ``to_time``), and written with :class:`sink.store.TrendStore`. That
writer is idempotent per (tweet, model version), so replaying the same version changes nothing
and a new version replaces the tweet's current mentions and moves its trend counts.

Progress is committed to the replay's own consumer group after every stored batch (PostgreSQL
first, then dead letters, then the offsets), which is what ``resume`` starts from.

Broker quirks handled here (found on Tansu, the local broker, and harmless on Kafka):

* ``ListOffsets(latest)`` may answer the base offset of the last record batch plus one instead
  of the high watermark. The Fetch response's high watermark is right, so a partition's end is
  frozen at the larger of the two the first time a fetch reports it.
* ``offsets_for_times`` may answer garbage. An answer past the partition's beginning is only
  trusted after the record just before it turns out older than ``from_time``; otherwise the
  partition is scanned from the beginning. Records older than ``from_time`` are skipped either
  way, so a bad answer costs time, never correctness.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from sink.settings import SinkSettings
from sink.consumer import close_clients
from sink.store import TrendStore, store_for
from sink.writer import WriteResult
from tweetner import replay_records
from tweetner.messages import DeadLetter

log = logging.getLogger(__name__)

AllPartitions = Literal["all"]


@dataclass(frozen=True)
class ReplayOptions:
    topic: str
    # Start: exactly one of from_time / from_offsets, unless resume supplies committed offsets.
    from_time: datetime | None = None
    # partition -> first offset to read (None: that partition's earliest), or "all" partitions
    # from their earliest offset. Partitions not named are not replayed.
    from_offsets: dict[int, int | None] | AllPartitions | None = None
    to_time: datetime | None = None
    retag: bool = False
    group: str | None = None
    resume: bool = False
    dry_run: bool = False
    batch_size: int = 256
    # A safety net for brokers whose end offsets cannot be learnt: stop once nothing arrived for
    # this long. With a correct end it never triggers.
    idle_timeout_s: float = 10.0
    progress: bool = True
    # PostgreSQL outages: this many tries with exponential backoff, then the job fails (its
    # progress so far is committed, so ``resume`` continues from there).
    write_attempts: int = 6
    retry_initial_s: float = 0.5

    def __post_init__(self) -> None:
        starts = (self.from_time is not None) + (self.from_offsets is not None)
        if starts > 1:
            raise ValueError("give either a start time or start offsets, not both")
        if starts == 0 and not self.resume:
            raise ValueError("a replay needs a start time, start offsets, or resume")
        if self.batch_size < 1:
            raise ValueError("batch_size must be positive")

    @property
    def consumer_group(self) -> str:
        return self.group or f"tweetner-replay-{self.topic}"


@dataclass
class ReplaySummary:
    topic: str
    group: str
    mode: str  # "retag" or "resink"
    dry_run: bool
    model_version: str | None = None
    records_read: int = 0
    # Read but outside [from_time, ...): not stored.
    records_skipped: int = 0
    # Dry run: records that would be stored.
    records_valid: int = 0
    tweets_inserted: int = 0
    tweets_unchanged: int = 0
    tweets_replaced: int = 0
    mentions_inserted: int = 0
    # Minute buckets (bucket, label, entity) whose count changed, net over the whole replay.
    trend_buckets_changed: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    # How from_time became start offsets: "broker" (offsets_for_times, verified), "scan" (its
    # answer was unusable: read from the beginning, skipping older records), "mixed", or None.
    time_lookup: str | None = None
    # partition -> {"start", "end", "next", "stopped_by"}
    partitions: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, result: WriteResult) -> None:
        self.tweets_inserted += result.tweets_inserted
        self.tweets_unchanged += result.tweets_unchanged
        self.tweets_replaced += result.tweets_replaced
        self.mentions_inserted += result.mentions_inserted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Partition:
    tp: Any
    beginning: int
    start: int
    end_hint: int
    next: int = 0
    # Frozen once a fetch reported the high watermark; None until then.
    end: int | None = None
    # The first record read must be older than from_time, or the broker's time lookup is wrong.
    verify: bool = False
    done: bool = False
    stopped_by: str | None = None
    committed: int | None = None

    def remaining(self) -> int:
        return max(0, (self.end if self.end is not None else self.end_hint) - self.next)


class ReplayError(RuntimeError):
    """The replay cannot start or go on (missing topic, storage down for good)."""


class _Stopped(Exception):
    pass


def _ms(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return int(ts.timestamp() * 1000)


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
        self._producer: Any = None
        self._deltas: Counter[tuple[datetime, str, str]] = Counter()
        self._from_ms = _ms(options.from_time)
        self._to_ms = _ms(options.to_time)
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
            parts = self._plan()
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
        close_clients(self._consumer, self._producer)
        self._consumer = self._producer = None

    # where to start and stop ----------------------------------------------------------------
    def _partitions(self) -> list[Any]:
        from kafka import TopicPartition

        deadline = time.monotonic() + 10
        while True:
            found = self._consumer.partitions_for_topic(self.options.topic)
            if found:
                break
            if time.monotonic() > deadline:
                raise ReplayError(f"topic {self.options.topic!r} not found")
            time.sleep(0.2)
        wanted = self.options.from_offsets
        if isinstance(wanted, dict):
            missing = sorted(set(wanted) - set(found))
            if missing:
                raise ReplayError(f"topic {self.options.topic!r} has no partition(s) {missing}")
            found = set(wanted)
        return [TopicPartition(self.options.topic, p) for p in sorted(found)]

    def _plan(self) -> dict[Any, _Partition]:
        tps = self._partitions()
        c = self._consumer
        beginning = c.beginning_offsets(tps)
        end_hint = c.end_offsets(tps)
        parts = {tp: _Partition(tp, beginning[tp], beginning[tp], end_hint[tp]) for tp in tps}
        committed = {tp: c.committed(tp) for tp in tps} if self.options.resume else {}
        by_time = [tp for tp in tps if committed.get(tp) is None]
        if isinstance(self.options.from_offsets, dict):
            for tp in by_time:
                offset = self.options.from_offsets[tp.partition]
                parts[tp].start = beginning[tp] if offset is None else offset
        elif self._from_ms is not None and by_time:
            self._time_starts([parts[tp] for tp in by_time])
        for tp, offset in committed.items():
            if offset is not None:
                parts[tp].start = offset
        c.assign(tps)
        for p in parts.values():
            p.start = max(p.start, p.beginning)
            p.next = p.committed = p.start
            c.seek(p.tp, p.start)
            log.info("replay %s: start %d (beginning %d, end hint %d)%s", p.tp, p.start,
                     p.beginning, p.end_hint, " verifying the time lookup" if p.verify else "")
        return parts

    def _time_starts(self, parts: Sequence[_Partition]) -> None:
        from kafka.errors import KafkaError

        try:
            found = self._consumer.offsets_for_times({p.tp: self._from_ms for p in parts})
        except (KafkaError, ValueError) as exc:
            log.warning("offsets_for_times failed (%s); scanning from the beginning", exc)
            found = {}
        for p in parts:
            hit = found.get(p.tp)
            # None means "nothing that new"; the end hint is then where such records would start.
            offset = hit.offset if hit is not None else p.end_hint
            if offset > p.beginning:
                # Read from one record earlier: that record must be older than from_time.
                p.start, p.verify = offset - 1, True
        log.info("offsets_for_times(%s): %s", self.options.from_time,
                 {p.tp.partition: (h.offset if (h := found.get(p.tp)) else None) for p in parts})
        used = {p.verify for p in parts}
        self.summary.time_lookup = ("mixed" if len(used) > 1 else "broker" if True in used
                                    else "scan")

    def _learn_ends(self, parts: dict[Any, _Partition]) -> None:
        for p in parts.values():
            if p.end is None:
                high = self._consumer.highwater(p.tp)
                if high is not None:
                    p.end = max(p.end_hint, high)

    def _finish(self, p: _Partition, why: str) -> None:
        if not p.done:
            p.done, p.stopped_by = True, why
            self._consumer.pause(p.tp)

    # the loop -----------------------------------------------------------------------------
    def _loop(self, parts: dict[Any, _Partition]) -> None:
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
                self._learn_ends(parts)
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
        except _Stopped:
            log.warning("replay stopped with an unwritten batch; its offsets stay uncommitted")
        finally:
            bar.close()
            self.summary.interrupted = any(not p.done for p in parts.values())
            self.summary.partitions = {
                p.tp.partition: {"start": p.start, "end": p.end, "next": p.next,
                                 "stopped_by": p.stopped_by} for p in parts.values()}

    def _take(self, p: _Partition, msgs: Sequence[Any], batch: list[Any]) -> None:
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
            valid, dead = replay_records.check(batch, raw=self.options.retag)
            self.summary.records_valid += valid
            self.summary.dead_letters += len(dead)
            return
        if self.options.retag:
            decoded = replay_records.retag(batch, self._tagger)
        else:
            decoded = replay_records.decode_tagged(batch)
        result, rejected = self._retrying(lambda: self._write(decoded.tagged))
        for d in result.deltas:
            self._deltas[(d.bucket_start, d.label, d.entity)] += d.delta
        self.summary.add(result)
        self._send_dead_letters(decoded.dead + rejected)

    def _write(self, tagged: Sequence[tuple[Any, Any]]) -> tuple[WriteResult, list[DeadLetter]]:
        try:
            return self.store.write([rec for _, rec in tagged]), []
        except (DataError, IntegrityError) as exc:
            if exc.connection_invalidated:
                raise
            # A value PostgreSQL refuses (e.g. a NUL byte) would fail the batch on every try:
            # write record by record and dead-letter only the ones that fail on their own.
            log.warning("batch rejected by PostgreSQL (%s); writing records one by one",
                        type(exc).__name__)
            result, rejected = WriteResult(), []
            for msg, rec in tagged:
                try:
                    result = result.merge(self.store.write([rec]))
                except (DataError, IntegrityError) as one:
                    if one.connection_invalidated:
                        raise
                    rejected.append(replay_records.dead_letter(
                        msg, f"rejected by PostgreSQL: {one.orig}"))
            return result, rejected

    def _retrying(self, action: Callable[[], Any]) -> Any:
        delay = self.options.retry_initial_s
        for attempt in range(1, self.options.write_attempts + 1):
            try:
                return action()
            except DBAPIError as exc:
                if attempt == self.options.write_attempts:
                    raise ReplayError(f"PostgreSQL write failed {attempt} times: {exc.orig}; "
                                      "progress so far is committed, rerun with --resume") from exc
                log.warning("PostgreSQL write failed (%s); retrying in %.1fs", exc.orig, delay)
            if self._stop.wait(delay):
                raise _Stopped()
            delay = min(delay * 2, 30.0)

    def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        if not dead:
            return
        try:
            if self._producer is None:
                self._producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap,
                                               acks="all", retries=5, linger_ms=5)
            futures = [self._producer.send(self.settings.deadletter_topic,
                                           value=d.model_dump_json().encode()) for d in dead]
            self._producer.flush()
            for f in futures:
                f.get(timeout=30)
        except KafkaError as exc:
            # A dead letter that cannot be delivered must not be committed past: fail the job
            # before this batch's offsets are committed (its rows are stored; a rerun is a no-op).
            raise ReplayError(f"cannot produce dead letters to {self.settings.deadletter_topic}: "
                              f"{exc}; rerun with --resume") from exc
        self.summary.dead_letters += len(dead)

    def _commit(self, parts: dict[Any, _Partition]) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        if self.options.dry_run:
            return
        moved = {p.tp: OffsetAndMetadata(p.next, "", -1) for p in parts.values()
                 if p.next != p.committed}
        if not moved:
            return
        try:
            self._consumer.commit(moved)
            for tp, meta in moved.items():
                parts[tp].committed = meta.offset
        except KafkaError as exc:
            # Only resume needs these; the data is stored, and a re-read would change nothing.
            log.warning("committing replay progress failed (%s); retrying with the next batch", exc)
