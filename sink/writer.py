"""Idempotent batch writes of tagged tweets into tweets, mentions and the trend buckets.

Everything for one batch happens in one transaction. Trend buckets change only when a tweet's
current state changes (new tweet, a record with another model version, or a correction: another
text ingested later, see :func:`replaces`): that state lives in the tweets row, which is locked
for the duration, so replays, duplicates and concurrent writers (the live sink beside a replay)
can never count a mention twice.
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


@dataclass(frozen=True)
class Revision:
    """What decides whether a record replaces the stored tweet: its text, when it was ingested
    and which model version tagged it."""

    text: str
    ingested_at: datetime
    model_version: str


_NEVER = datetime.min.replace(tzinfo=timezone.utc)


def _revision(rec: TaggedTweet) -> Revision:
    return Revision(rec.text, rec.ingested_at, rec.model_version)


def replaces(new: Revision, current: Revision | None) -> bool:
    """The one rule for a second record with a known id (docs/pipeline.md, "Duplicates").

    The same text is the same tweet: only another model version replaces it (a retag). Another
    text is a correction when it was ingested later (ties broken by the text, so every order of
    arrival ends in the same state) and a stale copy to ignore otherwise."""
    if current is None:
        return True
    if new.text == current.text:
        return new.model_version != current.model_version
    return (new.ingested_at, new.text) > (current.ingested_at, current.text)


def _winner(current: Revision | None, recs: Sequence[TaggedTweet]) -> TaggedTweet | None:
    """The record of ``recs`` (in arrival order) the tweet ends as, or None if none replaces it."""
    best: TaggedTweet | None = None
    for rec in recs:
        if replaces(_revision(rec), current):
            best, current = rec, _revision(rec)
    return best


def write_batch(conn: Connection, records: Sequence[TaggedTweet]) -> WriteResult:
    """The batch write inside a caller's transaction (``MentionWriter.write`` opens one)."""
    by_id: dict[str, list[TaggedTweet]] = {}
    for rec in records:
        by_id.setdefault(rec.id, []).append(rec)
    ids = sorted(by_id)
    result = WriteResult()

    # Sorted ids: two writers with overlapping batches take row locks in the same order.
    first_winner = {i: _winner(None, by_id[i]) for i in ids}
    inserted_ids = set(conn.execute(
        pg_insert(TweetRow).on_conflict_do_nothing(index_elements=["id"])
        .returning(TweetRow.id, sort_by_parameter_order=False),
        [_tweet_row(first_winner[i]) for i in ids]).scalars())
    existing = [i for i in ids if i not in inserted_ids]
    stored: dict[str, tuple[Revision, datetime]] = {}
    if existing:
        stored = {r.id: (Revision(r.text, r.ingested_at or _NEVER, r.model_version), r.created_at)
                  for r in conn.execute(
                      select(TweetRow.id, TweetRow.text, TweetRow.ingested_at,
                             TweetRow.model_version, TweetRow.created_at)
                      .where(TweetRow.id.in_(existing)).order_by(TweetRow.id).with_for_update())}

    final: dict[str, TaggedTweet] = {i: first_winner[i] for i in inserted_ids}
    # (tweet, version) pairs whose mentions leave / enter the trend counts, with the bucket time.
    leaving: dict[tuple[str, str], datetime] = {}
    entering: dict[tuple[str, str], datetime] = {}
    switched: list[dict] = []
    corrected: set[str] = set()
    for tid in ids:
        if tid in inserted_ids:
            result.tweets_inserted += 1
            entering[(tid, final[tid].model_version)] = final[tid].created_at
            continue
        current, created_at = stored[tid]
        rec = _winner(current, by_id[tid])
        if rec is None:
            result.tweets_unchanged += 1
            continue
        final[tid] = rec
        result.tweets_replaced += 1
        leaving[(tid, current.model_version)] = created_at
        if rec.text == current.text:
            # created_at is the tweet's, not the model's: buckets stay where they were.
            entering[(tid, rec.model_version)] = created_at
            switched.append(dict(b_id=tid, b_version=rec.model_version, b_name=rec.model_name,
                                 b_tagged_at=rec.tagged_at))
        else:
            entering[(tid, rec.model_version)] = rec.created_at
            corrected.add(tid)

    counts: Counter[tuple[datetime, str, str]] = Counter()
    if corrected:
        # The old text's mentions (every version) describe a text that no longer exists: their
        # trend contributions leave now, before the rows go.
        _count_stored_mentions(conn, {k: (b, -1) for k, b in leaving.items() if k[0] in corrected},
                               counts)
        conn.execute(delete(MentionRow).where(MentionRow.tweet_id.in_(sorted(corrected))))
        conn.execute(
            TweetRow.__table__.update().where(TweetRow.id == bindparam("b_id"))
            .values(text=bindparam("b_text"), created_at=bindparam("b_created_at"),
                    user_name=bindparam("b_user"), lang=bindparam("b_lang"),
                    ingested_at=bindparam("b_ingested_at"), tagged_at=bindparam("b_tagged_at"),
                    model_name=bindparam("b_name"), model_version=bindparam("b_version")),
            [_correction_params(final[t]) for t in sorted(corrected)])

    # Only records with the tweet's final text have mentions worth keeping; other versions of
    # that text are stored without becoming current (a retag can switch back to them).
    mention_rows = [row for tid, rec in ((t, r) for t in final for r in by_id[t])
                    if rec.text == final[tid].text for row in _mention_rows(rec)]
    new_mentions: list[tuple[str, str, str, str]] = []
    if mention_rows:
        new_mentions = [tuple(r) for r in conn.execute(
            pg_insert(MentionRow).on_conflict_do_nothing(constraint="uq_mentions_span")
            .returning(MentionRow.tweet_id, MentionRow.model_version, MentionRow.label,
                       MentionRow.normalized, sort_by_parameter_order=False),
            mention_rows)]
    result.mentions_inserted = len(new_mentions)

    if switched:
        conn.execute(
            TweetRow.__table__.update()
            .where(TweetRow.id == bindparam("b_id"))
            .values(model_version=bindparam("b_version"), model_name=bindparam("b_name"),
                    tagged_at=bindparam("b_tagged_at")),
            switched)

    # A new or corrected tweet's entering mentions are exactly the rows this batch inserted.
    fresh = {k for k in entering if k[0] in inserted_ids or k[0] in corrected}
    for tid, version, label, normalized in new_mentions:
        if (tid, version) in fresh and normalized:
            counts[(minute_of(entering[(tid, version)]), label, normalized)] += 1
    # A version switch: the mentions of either version may predate this batch, so read them back.
    # One read for both sides: leaving and entering pairs of a switch never share a version.
    switch = {k: (b, -1) for k, b in leaving.items() if k[0] not in corrected}
    switch.update({k: (b, +1) for k, b in entering.items() if k not in fresh})
    _count_stored_mentions(conn, switch, counts)

    result.deltas = sorted(BucketDelta(b, lab, ent, n) for (b, lab, ent), n in counts.items() if n)
    if result.deltas:
        _apply_bucket_deltas(conn, result.deltas)
    return result


def _correction_params(rec: TaggedTweet) -> dict:
    return dict(b_id=rec.id, b_text=rec.text, b_created_at=rec.created_at, b_user=rec.user,
                b_lang=rec.lang, b_ingested_at=rec.ingested_at, b_tagged_at=rec.tagged_at,
                b_name=rec.model_name, b_version=rec.model_version)


def _count_stored_mentions(conn: Connection, pairs: dict[tuple[str, str], tuple[datetime, int]],
                           counts: Counter[tuple[datetime, str, str]]) -> None:
    """For each (tweet, version) pair with its (bucket time, sign), adds the sign per stored
    mention to that bucket's count, in one query."""
    if not pairs:
        return
    for tid, version, label, normalized in conn.execute(
            select(MentionRow.tweet_id, MentionRow.model_version, MentionRow.label,
                   MentionRow.normalized)
            .where(tuple_(MentionRow.tweet_id, MentionRow.model_version).in_(list(pairs)))):
        if normalized:
            bucket, sign = pairs[(tid, version)]
            counts[(minute_of(bucket), label, normalized)] += sign


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
