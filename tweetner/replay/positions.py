"""Where a replay starts and stops in each partition, and how far it got.

Broker quirks handled here (found on Tansu, the local broker, and harmless on Kafka):

* ``ListOffsets(latest)`` may answer the base offset of the last record batch plus one instead
  of the high watermark. The Fetch response's high watermark is right, so a partition's end is
  frozen at the larger of the two the first time a fetch reports it (:func:`learn_ends`).
* ``offsets_for_times`` may answer garbage. An answer past the partition's beginning is only
  trusted after the record just before it turns out older than ``from_time``; otherwise the
  partition is scanned from the beginning (the service's loop does that check).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from tweetner.replay.options import ReplayOptions

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The replay cannot start or go on (missing topic, storage down for good)."""


@dataclass
class PartitionPosition:
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


def epoch_ms(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return int(ts.timestamp() * 1000)


class RangePlanner:
    """Assigns ``consumer`` the replayed partitions and seeks each to its start."""

    def __init__(self, consumer: Any, options: ReplayOptions) -> None:
        self._consumer = consumer
        self.options = options
        self._from_ms = epoch_ms(options.from_time)
        # How from_time became start offsets: "broker", "scan", "mixed", or None (see ReplaySummary).
        self.time_lookup: str | None = None

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

    def plan(self) -> dict[Any, PartitionPosition]:
        tps = self._partitions()
        c = self._consumer
        beginning = c.beginning_offsets(tps)
        end_hint = c.end_offsets(tps)
        parts = {tp: PartitionPosition(tp, beginning[tp], beginning[tp], end_hint[tp]) for tp in tps}
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

    def _time_starts(self, parts: Sequence[PartitionPosition]) -> None:
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
        self.time_lookup = "mixed" if len(used) > 1 else "broker" if True in used else "scan"


def learn_ends(consumer: Any, parts: dict[Any, PartitionPosition]) -> None:
    """Freezes each partition's end at the first high watermark a fetch reports."""
    for p in parts.values():
        if p.end is None:
            high = consumer.highwater(p.tp)
            if high is not None:
                p.end = max(p.end_hint, high)

