"""Retention against the real PostgreSQL: old tweets leave with their mentions, buckets stay."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from sink.retention import prune
from sink.schema import create_schema
from sink.store import TrendStore
from tests.sink.streams import ago, tagged


def _count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_prune_deletes_old_tweets_with_their_mentions(engine, settings, now):
    old = now - settings.tweet_retention - timedelta(hours=1)
    TrendStore(engine).write([
        tagged("old1", old, [("Paris", "location"), ("Taylor Swift", "person")]),
        tagged("old2", old, [("Paris", "location")]),
        tagged("new1", ago(now, 5), [("Paris", "location")]),
    ])
    # A second model version of an old tweet: its mentions go too.
    TrendStore(engine).write([tagged("old2", old, [("Paris", "location")], version="v2")])
    assert _count(engine, "SELECT count(*) FROM mentions") == 5
    buckets = _count(engine, "SELECT count(*) FROM trend_hour")

    result = prune(engine, settings, now=now)

    assert result.tweets == 2
    with engine.connect() as conn:
        left = sorted(tuple(r) for r in conn.execute(text("SELECT tweet_id, normalized FROM mentions")))
    assert left == [("new1", "paris")]
    # Hour buckets outlive tweets (400 days by default): trends keep their history.
    assert _count(engine, "SELECT count(*) FROM trend_hour") == buckets


def test_schema_2_drops_the_mentions_foreign_key(engine):
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE mentions ADD CONSTRAINT mentions_tweet_id_fkey "
                          "FOREIGN KEY (tweet_id) REFERENCES tweets (id) ON DELETE CASCADE"))
    create_schema(engine)  # what an existing version-1 database meets on the next start
    assert _count(engine, "SELECT count(*) FROM pg_constraint WHERE conrelid = 'mentions'::regclass "
                          "AND contype = 'f'") == 0
    assert _count(engine, "SELECT version FROM sink_schema_info") == 2
