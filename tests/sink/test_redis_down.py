from __future__ import annotations

import logging
import socket
from datetime import timedelta

from sqlalchemy import text

from sink.cache import TrendCache
from sink.store import TrendStore
from sink import trends
from tests.sink.streams import ago, tagged


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_keeps_writing_postgres_then_resyncs(engine, settings, redis_client, now, caplog):
    down = TrendCache(settings.with_(redis_url=f"redis://127.0.0.1:{_closed_port()}/0"), engine)
    store = TrendStore(engine, down)
    with caplog.at_level(logging.WARNING, logger="sink.cache"):
        r = store.write([tagged("r1", ago(now, 1), [("Paris", "location")]),
                         tagged("r2", ago(now, 2), [("Paris", "location")])])
    assert r.tweets_inserted == 2
    assert any("Redis unavailable" in m for m in caplog.messages)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 2
        sql = trends.top_entities(conn, timedelta(minutes=15), now=now)
    # Reads fall back to PostgreSQL with the same answer.
    assert down.top(timedelta(minutes=15), now=now) == sql
    assert down.trending(timedelta(minutes=15), now=now, min_count=1)[0].entity == "paris"

    # Redis "comes back" (a cache on the live server, which has never seen these writes): the
    # first write it gets rebuilds the live sets from PostgreSQL, so nothing written meanwhile
    # is missing.
    up = TrendCache(settings, engine)
    TrendStore(engine, up).write([tagged("r3", ago(now, 0), [("Paris", "location")])])
    assert [(x.entity, x.count) for x in up.live_top(timedelta(minutes=15), now=now)] == [("paris", 3)]
