"""Idempotent batch writes of tagged tweets into tweets, mentions and the trend buckets.

Everything for one batch happens in one transaction. Trend buckets change only when a tweet's
*current model version* changes (new tweet, or a record with another version): that state lives
in the tweets row, which is locked for the duration, so replays, duplicates and concurrent
writers (the live sink beside a replay) can never count a mention twice.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Sequence

from sqlalchemy import Connection, Engine, bindparam, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert

from sink.normalize import normalize_entity
from sink.schema import MentionRow, TrendHour, TrendMinute, TweetRow
from contracts.messages import TaggedTweet

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class BucketDelta:
    bucket_start: datetime
    label: str
    entity: str
    delta: int


@dataclass
class WriteResult:
    tweets_inserted: int = 0
    tweets_unchanged: int = 0
    tweets_replaced: int = 0
    mentions_inserted: int = 0
    # Net change per minute bucket, the only thing the Redis live sets are updated from.
    deltas: list[BucketDelta] = field(default_factory=list)

    def merge(self, other: "WriteResult") -> "WriteResult":
        merged = Counter[tuple[datetime, str, str]]()
        for d in (*self.deltas, *other.deltas):
            merged[(d.bucket_start, d.label, d.entity)] += d.delta
        return WriteResult(
            self.tweets_inserted + other.tweets_inserted,
            self.tweets_unchanged + other.tweets_unchanged,
            self.tweets_replaced + other.tweets_replaced,
            self.mentions_inserted + other.mentions_inserted,
            sorted(BucketDelta(*k, v) for k, v in merged.items() if v),
        )


def minute_of(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        # Tweets without a zone are taken as UTC, the same way PostgreSQL would store them here.
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).replace(second=0, microsecond=0)


def hour_of(ts: datetime) -> datetime:
    return minute_of(ts).replace(minute=0)


def _mention_rows(rec: TaggedTweet) -> list[dict]:
    seen: set[tuple[int, int, str]] = set()
    rows = []
    for e in rec.entities:
        key = (e.start, e.end, e.label)
        if key in seen:
            continue
        seen.add(key)
        rows.append(dict(tweet_id=rec.id, model_version=rec.model_version, char_start=e.start,
                         char_end=e.end, surface=e.text, normalized=normalize_entity(e.text),
                         label=e.label, score=float(e.score)))
    return rows


def _tweet_row(rec: TaggedTweet) -> dict:
    return dict(id=rec.id, text=rec.text, created_at=rec.created_at, user_name=rec.user,
                lang=rec.lang, ingested_at=rec.ingested_at, tagged_at=rec.tagged_at,
                model_name=rec.model_name, model_version=rec.model_version)


class MentionWriter:
    """Writes batches of :class:`TaggedTweet`; ``write`` is safe to call again with the same records."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[TaggedTweet]) -> WriteResult:
        if not records:
            return WriteResult()
        with self.engine.begin() as conn:
            return write_batch(conn, records)


def write_batch(conn: Connection, records: Sequence[TaggedTweet]) -> WriteResult:
    """The batch write inside a caller's transaction (``MentionWriter.write`` opens one)."""
    # Within a batch the last record of a tweet wins, as if the records were written one by one;
    # mentions of the earlier versions are still stored below, they just never become current.
    latest: dict[str, TaggedTweet] = {}
    for rec in records:
        latest.pop(rec.id, None)
        latest[rec.id] = rec
    ids = sorted(latest)
    result = WriteResult()

    # Sorted ids: two writers with overlapping batches take row locks in the same order.
    inserted_ids = set(conn.execute(
        pg_insert(TweetRow).on_conflict_do_nothing(index_elements=["id"])
        .returning(TweetRow.id, sort_by_parameter_order=False),
        [_tweet_row(latest[i]) for i in ids]).scalars())
    existing = [i for i in ids if i not in inserted_ids]
    stored: dict[str, tuple[str, datetime]] = {}
    if existing:
        stored = {r.id: (r.model_version, r.created_at) for r in conn.execute(
            select(TweetRow.id, TweetRow.model_version, TweetRow.created_at)
            .where(TweetRow.id.in_(existing)).order_by(TweetRow.id).with_for_update())}

    # (tweet, version) pairs whose mentions leave / enter the trend counts, with the bucket time.
    leaving: dict[tuple[str, str], datetime] = {}
    entering: dict[tuple[str, str], datetime] = {}
    replaced: list[dict] = []
    for tid in ids:
        rec = latest[tid]
        if tid in inserted_ids:
            result.tweets_inserted += 1
            entering[(tid, rec.model_version)] = rec.created_at
            continue
        old_version, created_at = stored[tid]
        if old_version == rec.model_version:
            result.tweets_unchanged += 1
            continue
        result.tweets_replaced += 1
        # created_at is the tweet's, not the model's: buckets stay where they were.
        leaving[(tid, old_version)] = created_at
        entering[(tid, rec.model_version)] = created_at
        replaced.append(dict(b_id=tid, b_version=rec.model_version, b_name=rec.model_name,
                             b_tagged_at=rec.tagged_at))

    mention_rows = [row for rec in records for row in _mention_rows(rec)]
    new_mentions: list[tuple[str, str, str, str]] = []
    if mention_rows:
        new_mentions = [tuple(r) for r in conn.execute(
            pg_insert(MentionRow).on_conflict_do_nothing(constraint="uq_mentions_span")
            .returning(MentionRow.tweet_id, MentionRow.model_version, MentionRow.label,
                       MentionRow.normalized, sort_by_parameter_order=False),
            mention_rows)]
    result.mentions_inserted = len(new_mentions)

    if replaced:
        conn.execute(
            TweetRow.__table__.update()
            .where(TweetRow.id == bindparam("b_id"))
            .values(model_version=bindparam("b_version"), model_name=bindparam("b_name"),
                    tagged_at=bindparam("b_tagged_at")),
            replaced)

    counts: Counter[tuple[datetime, str, str]] = Counter()
    # A brand-new tweet's entering mentions are exactly the rows this batch inserted for it.
    fresh = {k for k in entering if k[0] in inserted_ids}
    for tid, version, label, normalized in new_mentions:
        if (tid, version) in fresh and normalized:
            counts[(minute_of(entering[(tid, version)]), label, normalized)] += 1
    # A version switch: the mentions of either version may predate this batch, so read them back.
    switch_pairs = list(leaving) + [k for k in entering if k not in fresh]
    if switch_pairs:
        for tid, version, label, normalized in conn.execute(
                select(MentionRow.tweet_id, MentionRow.model_version, MentionRow.label,
                       MentionRow.normalized)
                .where(tuple_(MentionRow.tweet_id, MentionRow.model_version).in_(switch_pairs))):
            if not normalized:
                continue
            if (tid, version) in leaving:
                counts[(minute_of(leaving[(tid, version)]), label, normalized)] -= 1
            else:
                counts[(minute_of(entering[(tid, version)]), label, normalized)] += 1

    result.deltas = sorted(BucketDelta(b, lab, ent, n) for (b, lab, ent), n in counts.items() if n)
    if result.deltas:
        _apply_bucket_deltas(conn, result.deltas)
    return result


def _apply_bucket_deltas(conn: Connection, deltas: Iterable[BucketDelta]) -> None:
    minute = Counter[tuple[datetime, str, str]]()
    hour = Counter[tuple[datetime, str, str]]()
    for d in deltas:
        minute[(d.bucket_start, d.label, d.entity)] += d.delta
        hour[(hour_of(d.bucket_start), d.label, d.entity)] += d.delta
    for model, counts in ((TrendMinute, minute), (TrendHour, hour)):
        rows = [dict(bucket_start=b, label=lab, entity=ent, count=n)
                for (b, lab, ent), n in sorted(counts.items()) if n]
        if not rows:
            continue
        stmt = pg_insert(model)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["bucket_start", "label", "entity"],
            set_={"count": model.count + stmt.excluded.count}), rows)
        # Buckets that fell to zero (a replaced version) are dropped so the tables hold only
        # entities that are really there.
        if any(r["count"] < 0 for r in rows):
            keys = [(r["bucket_start"], r["label"], r["entity"]) for r in rows if r["count"] < 0]
            conn.execute(delete(model).where(
                tuple_(model.bucket_start, model.label, model.entity).in_(keys), model.count <= 0))
