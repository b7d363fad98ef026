"""A second record with a known id and another text: the later ingested text is the tweet
(a correction), in every order of arrival, in one batch or across batches, adjacent or far
apart; mentions, trend buckets and the Redis live sets agree with it."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from sink.cache import TrendCache
from sink.store import TrendStore
from sink import trends
from tests.sink.streams import ago, tagged
from tests.sink.test_writer import _bucket_mismatches

W15 = timedelta(minutes=15)


def _pair(now):
    old = tagged("dup", ago(now, 3), [("Paris", "location"), ("Obama", "person")])
    new = tagged("dup", ago(now, 1), [("Berlin", "location")])
    return (old.model_copy(update={"ingested_at": now - timedelta(seconds=10)}),
            new.model_copy(update={"ingested_at": now - timedelta(seconds=5)}))


def _fillers(now, n):
    return [tagged(f"f{i}", ago(now, 2), [("Rome", "location")]) for i in range(n)]


def _batches(first, second, fillers, layout):
    if layout == "one batch, adjacent":
        return [[first, second], fillers]
    if layout == "one batch, far apart":
        return [[first, *fillers, second]]
    if layout == "two batches, adjacent":
        return [[first], [second], fillers]
    return [[first], fillers, [second]]  # two batches, far apart


@pytest.mark.parametrize("order", ["old first", "new first"])
@pytest.mark.parametrize("layout", ["one batch, adjacent", "one batch, far apart",
                                    "two batches, adjacent", "two batches, far apart"])
def test_later_ingested_text_wins_everywhere(engine, base_settings, redis_client, now, order,
                                             layout):
    old, new = _pair(now)
    first, second = (old, new) if order == "old first" else (new, old)
    cache = TrendCache(base_settings, engine)
    cache.resync()
    store = TrendStore(engine, cache)
    for batch in _batches(first, second, _fillers(now, 30), layout):
        store.write(batch)
    store.write([old, new])  # at-least-once: a redelivery of both changes nothing

    with engine.connect() as conn:
        row = conn.execute(text("SELECT text, created_at FROM tweets WHERE id = 'dup'")).one()
        mentions = conn.execute(text(
            "SELECT normalized FROM mentions WHERE tweet_id = 'dup'")).scalars().all()
    assert (row.text, row.created_at) == (new.text, new.created_at)
    assert mentions == ["berlin"]
    assert _bucket_mismatches(engine) == []
    with engine.connect() as conn:
        sql_top = trends.top_entities(conn, window=W15, now=now)
    assert {(r.entity, r.count) for r in sql_top} == {("berlin", 1), ("rome", 30)}
    for label in (None, "location", "person"):
        with engine.connect() as conn:
            expected = trends.top_entities(conn, window=W15, label=label, now=now)
        assert cache.live_top(W15, label, 20, now) == expected, label


def test_same_text_again_is_a_duplicate_whatever_its_timestamps(engine, now):
    store = TrendStore(engine)
    first = tagged("same", ago(now, 2), [("Paris", "location")])
    store.write([first])
    again = first.model_copy(update={"ingested_at": now, "created_at": ago(now, 9)})
    result = store.write([again])
    assert (result.tweets_unchanged, result.deltas) == (1, [])
    assert _bucket_mismatches(engine) == []
