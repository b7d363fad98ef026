"""The bulk write path against the real PostgreSQL: a batch is a fixed number of statements
whatever its size, and a batch holding a duplicate and rows PostgreSQL refuses stores the rest,
resolves the duplicate by the one rule (later ingested text wins) and dead-letters only the bad
rows; mentions, trend buckets and Redis agree afterwards."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import event, text

from sink import trends
from sink.cache import TrendCache
from sink.delivery import write_with_fallback
from sink.store import TrendStore
from sink.writer import MentionWriter
from tests.sink.streams import ago, tagged
from tests.sink.test_writer import _bucket_mismatches

W15 = timedelta(minutes=15)


@dataclass(frozen=True)
class Rec:
    value: bytes
    offset: int
    topic: str = "tweets.tagged"
    partition: int = 0


def _statements(engine, action) -> list[tuple[str, bool]]:
    """Each statement sent, and whether it went as an executemany (a round trip per row)."""
    seen: list[tuple[str, bool]] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, executemany))

    event.listen(engine, "before_cursor_execute", count)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


def _batch(now, prefix: str, n: int):
    return [tagged(f"{prefix}{i}", ago(now, i % 7), [("Paris", "location"), (f"Name{i % 13}", "person")])
            for i in range(n)]


def test_a_batch_is_a_fixed_number_of_statements_whatever_its_size(engine, now):
    writer = MentionWriter(engine)
    small = _statements(engine, lambda: writer.write(_batch(now, "s", 1)))
    large = _statements(engine, lambda: writer.write(_batch(now, "l", 400)))
    # The same steps run for 1 tweet and for 400: rows travel as arrays, not one statement each.
    assert len(large) == len(small)
    assert not any(many for _, many in large)
    assert _bucket_mismatches(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM mentions")).scalar() == 802
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 802


def test_bulk_batch_with_a_duplicate_and_bad_rows_stores_the_rest(engine, base_settings,
                                                                  redis_client, now):
    cache = TrendCache(base_settings, engine)
    cache.resync()
    store = TrendStore(engine, cache)
    clean = _batch(now, "c", 60)
    old = tagged("dup", ago(now, 3), [("Obama", "person")]).model_copy(
        update={"ingested_at": now - timedelta(seconds=10)})
    new = tagged("dup", ago(now, 1), [("Berlin", "location")]).model_copy(
        update={"ingested_at": now - timedelta(seconds=5)})
    # Refused by the driver (a NUL) and by the server (an index row over its 8 KiB limit).
    nul = tagged("nul", ago(now, 1), [("Rome", "location")]).model_copy(update={"text": "R\x00me"})
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(300))
    long_id = tagged("long", ago(now, 1), [("Rome", "location")]).model_copy(update={"id": noise[:9000]})
    batch = [new, *clean[:20], nul, *clean[20:40], old, long_id, *clean[40:], clean[5]]
    records = [(Rec(b"", offset), t) for offset, t in enumerate(batch)]

    result, rejected = write_with_fallback(store, records, "sink")

    assert sorted(d.position for d in rejected) == [21, 43]
    assert all(d.reason.startswith("rejected by PostgreSQL") for d in rejected)
    assert result.tweets_inserted == 61  # 60 clean tweets and "dup"
    with engine.connect() as conn:
        ids = set(conn.execute(text("SELECT id FROM tweets")).scalars())
        dup = conn.execute(text("SELECT text FROM tweets WHERE id = 'dup'")).scalar_one()
        dup_mentions = conn.execute(text(
            "SELECT normalized FROM mentions WHERE tweet_id = 'dup'")).scalars().all()
        mentions = conn.execute(text("SELECT count(*) FROM mentions")).scalar()
    assert ids == {t.id for t in clean} | {"dup"}
    assert (dup, dup_mentions) == (new.text, ["berlin"])
    assert mentions == 2 * 60 + 1  # the redelivered clean[5] added nothing
    assert _bucket_mismatches(engine) == []
    for label in (None, "location", "person"):
        with engine.connect() as conn:
            expected = trends.top_entities(conn, window=W15, label=label, now=now)
        assert cache.live_top(W15, label, 20, now) == expected, label

    # At-least-once: the whole batch again changes nothing and refuses the same rows.
    again, rejected_again = write_with_fallback(store, records, "sink")
    assert (again.tweets_inserted, again.mentions_inserted, again.deltas) == (0, 0, [])
    assert sorted(d.position for d in rejected_again) == [21, 43]
    assert _bucket_mismatches(engine) == []
