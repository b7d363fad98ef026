"""Idempotent batch writes of tagged tweets into tweets, mentions and the trend buckets.

Everything for one batch happens in one transaction, in a fixed number of statements whatever
the batch size: each step sends its rows as one array per column and unnests them in SQL
(``INSERT ... SELECT FROM unnest(...)``), so a batch of 500 tweets costs the same few round
trips as a batch of one. A column travels as one JSON array (orjson): the
driver's own adaptation of Python lists quotes element by element, at about ten times the CPU. Trend buckets change only when a tweet's
current state changes (new tweet, a record with another model version, or a correction: another
text ingested later, see :func:`replaces`): that state lives in the tweets row, which is locked
for the duration, so replays, duplicates and concurrent writers (the live sink beside a replay)
can never count a mention twice.
"""
from __future__ import annotations

import logging
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

import orjson
from sqlalchemy import Connection, Engine, TextClause, text

from sink.normalize import normalize_entity
from contracts.messages import TaggedTweet

log = logging.getLogger(__name__)

# Entities repeat (a stream's trending names are a few thousand at any time) and normalising one
# (NFKC, edge and possessive stripping) costs more than storing its row: remember recent ones.
_normalized = lru_cache(maxsize=65_536)(normalize_entity)


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


def _mention_rows(rec: TaggedTweet) -> list[tuple]:
    """(tweet_id, model_version, char_start, char_end, surface, normalized, label, score) per
    distinct span and label of the record."""
    seen: set[tuple[int, int, str]] = set()
    rows = []
    for e in rec.entities:
        key = (e.start, e.end, e.label)
        if key in seen:
            continue
        seen.add(key)
        rows.append((rec.id, rec.model_version, e.start, e.end, e.text, _normalized(e.text),
                     e.label, float(e.score)))
    return rows


def _tweet_row(rec: TaggedTweet) -> tuple:
    return (rec.id, rec.text, rec.created_at, rec.user, rec.lang, rec.ingested_at, rec.tagged_at,
            rec.model_name, rec.model_version)


def _array(values: Iterable[object]) -> str:
    """One column as the JSON text :func:`_sql_array` turns back into a PostgreSQL array
    (datetimes as RFC 3339 with their offset, which PostgreSQL's timestamptz reads)."""
    return orjson.dumps(list(values)).decode("utf-8")


def _columns(rows: Sequence[tuple], names: Sequence[str]) -> dict[str, str]:
    """Rows as one array per column: the parameters of an unnest() statement."""
    columns = list(zip(*rows)) if rows else [()] * len(names)
    return {name: _array(col) for name, col in zip(names, columns)}


def _sql_array(name: str, type_: str) -> str:
    # In array order (WITH ORDINALITY), so the columns of one row stay together in unnest().
    return (f"ARRAY(SELECT CAST(e AS {type_}) FROM json_array_elements_text(CAST(:{name} AS json))"
            f" WITH ORDINALITY AS a(e, i) ORDER BY i)")


_TWEET_COLUMNS = ("id", "text", "created_at", "user_name", "lang", "ingested_at", "tagged_at",
                  "model_name", "model_version")
_TWEET_TYPES = ("text", "text", "timestamptz", "text", "text", "timestamptz", "timestamptz",
                "text", "text")
_MENTION_COLUMNS = ("tweet_id", "model_version", "char_start", "char_end", "surface",
                    "normalized", "label", "score")
_MENTION_TYPES = ("text", "text", "int", "int", "text", "text", "text", "float8")


def _unnest(names: Sequence[str], types: Sequence[str]) -> str:
    return "unnest(" + ", ".join(_sql_array(n, t) for n, t in zip(names, types)) + ")"


_INSERT_TWEETS = text(
    f"INSERT INTO tweets ({', '.join(_TWEET_COLUMNS)}) "
    f"SELECT * FROM {_unnest(_TWEET_COLUMNS, _TWEET_TYPES)} "
    "ON CONFLICT (id) DO NOTHING RETURNING id")
_LOCK_TWEETS = text(
    "SELECT id, text, ingested_at, model_version, created_at FROM tweets "
    f"WHERE id = ANY({_sql_array('ids', 'text')}) ORDER BY id FOR UPDATE")
_CORRECT_TWEETS = text(
    "UPDATE tweets t SET text = u.text, created_at = u.created_at, user_name = u.user_name, "
    "lang = u.lang, ingested_at = u.ingested_at, tagged_at = u.tagged_at, "
    "model_name = u.model_name, model_version = u.model_version "
    f"FROM {_unnest(_TWEET_COLUMNS, _TWEET_TYPES)} AS u({', '.join(_TWEET_COLUMNS)}) "
    "WHERE t.id = u.id")
_SWITCH_TWEETS = text(
    "UPDATE tweets t SET model_version = u.model_version, model_name = u.model_name, "
    "tagged_at = u.tagged_at FROM "
    f"{_unnest(('id', 'model_version', 'model_name', 'tagged_at'), ('text', 'text', 'text', 'timestamptz'))}"
    " AS u(id, model_version, model_name, tagged_at) WHERE t.id = u.id")
_DELETE_MENTIONS = text(f"DELETE FROM mentions WHERE tweet_id = ANY({_sql_array('ids', 'text')})")
_INSERT_MENTIONS = text(
    f"INSERT INTO mentions ({', '.join(_MENTION_COLUMNS)}) "
    f"SELECT * FROM {_unnest(_MENTION_COLUMNS, _MENTION_TYPES)} "
    "ON CONFLICT ON CONSTRAINT uq_mentions_span DO NOTHING "
    "RETURNING tweet_id, model_version, label, normalized")
_STORED_MENTIONS = text(
    "SELECT tweet_id, model_version, label, normalized FROM mentions "
    "WHERE (tweet_id, model_version) IN "
    f"(SELECT * FROM {_unnest(('tweet_id', 'model_version'), ('text', 'text'))})")
_BUCKET_COLUMNS = ("bucket_start", "label", "entity", "count")
_BUCKET_TYPES = ("timestamptz", "text", "text", "bigint")


def _upsert_buckets(table: str) -> TextClause:
    # Keys are unique within one statement (summed per batch), as ON CONFLICT DO UPDATE needs.
    return text(
        f"INSERT INTO {table} ({', '.join(_BUCKET_COLUMNS)}) "
        f"SELECT * FROM {_unnest(_BUCKET_COLUMNS, _BUCKET_TYPES)} "
        f"ON CONFLICT (bucket_start, label, entity) DO UPDATE SET count = {table}.count + EXCLUDED.count")


def _drop_empty_buckets(table: str) -> TextClause:
    return text(
        f"DELETE FROM {table} WHERE (bucket_start, label, entity) IN (SELECT * FROM "
        f"{_unnest(_BUCKET_COLUMNS[:3], _BUCKET_TYPES[:3])}) AND count <= 0")


_UPSERT_BUCKETS = {table: _upsert_buckets(table) for table in ("trend_minute", "trend_hour")}
_DROP_EMPTY_BUCKETS = {table: _drop_empty_buckets(table) for table in ("trend_minute", "trend_hour")}


class MentionWriter:
    """Writes batches of :class:`TaggedTweet`; ``write`` is safe to call again with the same records."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[TaggedTweet],
              commit: Callable[[Callable[[], None], WriteResult], None] | None = None) -> WriteResult:
        """``commit(do_commit, result)``, when given, commits the transaction by calling
        ``do_commit`` (the store uses it to commit and update its cache as one step)."""
        if not records:
            return WriteResult()
        with self.engine.connect() as conn, conn.begin() as tx:
            result = write_batch(conn, records)
            if commit is None:
                tx.commit()
            else:
                commit(tx.commit, result)
        return result


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
    inserted_ids = set(conn.execute(_INSERT_TWEETS, _columns(
        [_tweet_row(first_winner[i]) for i in ids], _TWEET_COLUMNS)).scalars())
    existing = [i for i in ids if i not in inserted_ids]
    stored: dict[str, tuple[Revision, datetime]] = {}
    if existing:
        stored = {r.id: (Revision(r.text, r.ingested_at or _NEVER, r.model_version), r.created_at)
                  for r in conn.execute(_LOCK_TWEETS, {"ids": _array(existing)})}

    final: dict[str, TaggedTweet] = {i: first_winner[i] for i in inserted_ids}
    # (tweet, version) pairs whose mentions leave / enter the trend counts, with the bucket time.
    leaving: dict[tuple[str, str], datetime] = {}
    entering: dict[tuple[str, str], datetime] = {}
    switched: list[tuple] = []
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
            switched.append((tid, rec.model_version, rec.model_name, rec.tagged_at))
        else:
            entering[(tid, rec.model_version)] = rec.created_at
            corrected.add(tid)

    counts: Counter[tuple[datetime, str, str]] = Counter()
    if corrected:
        # The old text's mentions (every version) describe a text that no longer exists: their
        # trend contributions leave now, before the rows go.
        _count_stored_mentions(conn, {k: (b, -1) for k, b in leaving.items() if k[0] in corrected},
                               counts)
        conn.execute(_DELETE_MENTIONS, {"ids": _array(sorted(corrected))})
        conn.execute(_CORRECT_TWEETS, _columns([_tweet_row(final[t]) for t in sorted(corrected)],
                                               _TWEET_COLUMNS))

    # Only records with the tweet's final text have mentions worth keeping; other versions of
    # that text are stored without becoming current (a retag can switch back to them).
    mention_rows = [row for tid, rec in ((t, r) for t in final for r in by_id[t])
                    if rec.text == final[tid].text for row in _mention_rows(rec)]
    new_mentions: list[tuple[str, str, str, str]] = []
    if mention_rows:
        new_mentions = [tuple(r) for r in conn.execute(
            _INSERT_MENTIONS, _columns(mention_rows, _MENTION_COLUMNS))]
    result.mentions_inserted = len(new_mentions)

    if switched:
        conn.execute(_SWITCH_TWEETS, _columns(switched, ("id", "model_version", "model_name",
                                                         "tagged_at")))

    # A new or corrected tweet's entering mentions are exactly the rows this batch inserted.
    fresh = {k for k in entering if k[0] in inserted_ids or k[0] in corrected}
    # One bucket per tweet, not per mention: a tweet has several.
    minutes = {k: minute_of(entering[k]) for k in fresh}
    for tid, version, label, normalized in new_mentions:
        if (tid, version) in fresh and normalized:
            counts[(minutes[(tid, version)], label, normalized)] += 1
    # A version switch: the mentions of either version may predate this batch, so read them back.
    # One read for both sides: leaving and entering pairs of a switch never share a version.
    switch = {k: (b, -1) for k, b in leaving.items() if k[0] not in corrected}
    switch.update({k: (b, +1) for k, b in entering.items() if k not in fresh})
    _count_stored_mentions(conn, switch, counts)

    result.deltas = sorted(BucketDelta(b, lab, ent, n) for (b, lab, ent), n in counts.items() if n)
    if result.deltas:
        _apply_bucket_deltas(conn, result.deltas)
    return result


def _count_stored_mentions(conn: Connection, pairs: dict[tuple[str, str], tuple[datetime, int]],
                           counts: Counter[tuple[datetime, str, str]]) -> None:
    """For each (tweet, version) pair with its (bucket time, sign), adds the sign per stored
    mention to that bucket's count, in one query."""
    if not pairs:
        return
    keys = list(pairs)
    for tid, version, label, normalized in conn.execute(
            _STORED_MENTIONS, _columns(keys, ("tweet_id", "model_version"))):
        if normalized:
            bucket, sign = pairs[(tid, version)]
            counts[(minute_of(bucket), label, normalized)] += sign


def _apply_bucket_deltas(conn: Connection, deltas: Iterable[BucketDelta]) -> None:
    minute = Counter[tuple[datetime, str, str]]()
    hour = Counter[tuple[datetime, str, str]]()
    for d in deltas:
        minute[(d.bucket_start, d.label, d.entity)] += d.delta
        hour[(hour_of(d.bucket_start), d.label, d.entity)] += d.delta
    for table, counts in (("trend_minute", minute), ("trend_hour", hour)):
        rows = [(b, lab, ent, n) for (b, lab, ent), n in sorted(counts.items()) if n]
        if not rows:
            continue
        conn.execute(_UPSERT_BUCKETS[table], _columns(rows, _BUCKET_COLUMNS))
        # Buckets that fell to zero (a replaced version) are dropped so the tables hold only
        # entities that are really there.
        falling = [r[:3] for r in rows if r[3] < 0]
        if falling:
            conn.execute(_DROP_EMPTY_BUCKETS[table], _columns(falling, _BUCKET_COLUMNS[:3]))
