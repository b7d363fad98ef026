"""Trend queries on a synthetic timed stream whose right answers are known.

Stream (minutes are "minutes before now"):
* Obama (person): 2 mentions every minute for 26 hours: frequent and steady.
* Taylor Swift (person): 25 mentions in the last 10 minutes only, as "#TaylorSwift" and
  "Taylor Swift": a burst. 3 each in minutes 0-4, 2 each in minutes 5-9.
* Paris (location): 1 mention per minute for the last 30 minutes.
* Rare (org): 3 mentions in the last 15 minutes: below the trending floor of 5.
* Old Burst (org): 40 mentions 3 hours ago.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from sink.cache import TrendCache
from sink.store import TrendStore
from sink import trends
from tests.sink.streams import ago, tagged

W15 = timedelta(minutes=15)


def _stream(now):
    recs = []
    for m in range(26 * 60):
        for k in range(2):
            recs.append(tagged(f"obama-{m}-{k}", ago(now, m), [("Obama", "person")]))
    for i in range(25):
        surface = "#TaylorSwift" if i % 2 else "Taylor Swift"
        recs.append(tagged(f"swift-{i}", ago(now, i % 10), [(surface, "person")]))
    for m in range(30):
        recs.append(tagged(f"paris-{m}", ago(now, m), [("Paris", "location")]))
    for i in range(3):
        recs.append(tagged(f"rare-{i}", ago(now, i), [("Rare", "org")]))
    for i in range(40):
        recs.append(tagged(f"old-{i}", ago(now, 180), [("Old Burst", "org")]))
    return recs


@pytest.fixture(scope="module")
def stream(session_engine, base_settings):
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc).replace(second=30, microsecond=0)
    with session_engine.begin() as conn:
        conn.execute(text("TRUNCATE mentions, tweets, trend_minute, trend_hour"))
    store = TrendStore(session_engine)
    recs = _stream(now)
    for i in range(0, len(recs), 1000):
        store.write(recs[i:i + 1000])
    return session_engine, now


def _top(engine, **kw):
    with engine.connect() as conn:
        return trends.top_entities(conn, **kw)


def _trending(engine, **kw):
    with engine.connect() as conn:
        return trends.trending_entities(conn, **kw)


def test_top_ranks_by_count_within_the_window(stream):
    engine, now = stream
    got = [(r.entity, r.count) for r in _top(engine, window=W15, now=now)]
    assert got == [("obama", 30), ("taylor swift", 25), ("paris", 15), ("rare", 3)]
    got5 = [(r.entity, r.count) for r in _top(engine, window=timedelta(minutes=5), now=now)]
    assert got5 == [("taylor swift", 15), ("obama", 10), ("paris", 5), ("rare", 3)]
    assert [r.entity for r in _top(engine, window=timedelta(hours=4), now=now, limit=3)] == [
        "obama", "old burst", "paris"]


def test_labels_filter(stream):
    engine, now = stream
    assert [(r.entity, r.label) for r in _top(engine, window=W15, label="location", now=now)] == [
        ("paris", "location")]
    assert {r.label for r in _top(engine, window=W15, label="person", now=now)} == {"person"}
    assert _top(engine, window=W15, label="nope", now=now) == []


def test_burst_trends_first_and_steady_does_not(stream):
    engine, now = stream
    rows = _trending(engine, window=W15, now=now)
    assert rows[0].entity == "taylor swift" and rows[0].count == 25
    assert rows[0].score == pytest.approx(25.0)
    by_entity = {r.entity: r for r in rows}
    # Obama's 30 are exactly its baseline rate: score about 0, far below the burst.
    assert abs(by_entity["obama"].score) < 1.0
    assert "rare" not in by_entity  # under the minimum-count floor
    assert "old burst" not in by_entity  # outside the window
    person = _trending(engine, window=W15, label="person", now=now, limit=1)
    assert [r.entity for r in person] == ["taylor swift"]


def test_entity_timeline(stream):
    engine, now = stream
    with engine.connect() as conn:
        minutes = trends.entity_timeline(conn, "#TaylorSwift", bucket="minute",
                                         start=ago(now, 20), now=now)
        hours = trends.entity_timeline(conn, "obama", label="person", bucket="hour",
                                       start=ago(now, 6 * 60), now=now)
    assert sum(p.count for p in minutes) == 25
    assert len(minutes) == 21 and minutes[-1].count == 3 and minutes[0].count == 0
    # Hour buckets from the hour holding now-6h through the current minute: 6 h + the minutes
    # of the current hour, inclusive, at 2 per minute.
    assert len(hours) == 7
    assert sum(p.count for p in hours) == 2 * (6 * 60 + now.minute + 1)


def test_cache_and_sql_agree(stream, base_settings, redis_client):
    engine, now = stream
    cache = TrendCache(base_settings, engine)
    assert cache.resync()
    cases = [dict(window=W15), dict(window=timedelta(minutes=5), label="person"),
             dict(window=timedelta(hours=1), limit=2), dict(window=W15, label="location"),
             dict(window=timedelta(hours=4))]  # beyond the live horizon: PostgreSQL path
    for case in cases:
        sql = _top(engine, now=now, **case)
        live = cache.live_top(now=now, **case)
        assert live is None or live == sql, case
        assert cache.top(now=now, **case) == sql, case  # computed and stored
        assert cache.top(now=now, **case) == sql, case  # served from the answer cache
        assert cache.trending(now=now, **case) == _trending(engine, now=now, **case), case
        assert cache.trending(now=now, **case) == _trending(engine, now=now, **case), case
    assert cache.live_top(window=W15, now=now) is not None


def test_live_sets_follow_writes(stream, base_settings, redis_client):
    engine, now = stream
    cache = TrendCache(base_settings, engine)
    cache.resync()
    store = TrendStore(engine, cache)
    try:
        store.write([tagged("live-1", ago(now, 1), [("Paris", "location"), ("Rare", "org")]),
                     tagged("live-2", ago(now, 0), [("#NewThing", "misc")])])
        store.write([tagged("live-1", ago(now, 1), [("Rare", "org")], version="v2")])
        for label in (None, "location", "org", "misc"):
            assert cache.live_top(W15, label, 20, now) == _top(engine, window=W15, label=label,
                                                              now=now)
    finally:  # leave the module's stream as it was for the other tests
        store.write([tagged("live-1", ago(now, 1), [], version="gone"),
                         tagged("live-2", ago(now, 0), [], version="gone")])
        assert cache.live_top(W15, None, 20, now) == _top(engine, window=W15, now=now)
