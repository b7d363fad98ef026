"""What one replay job is asked to do (:class:`ReplayOptions`) and what it did (:class:`ReplaySummary`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sink.writer import WriteResult

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
