"""Producing test records, running `tweetner replay` in-process, and reading back what it stored."""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from kafka import KafkaProducer
from sqlalchemy import Engine, text

from tweetner.cli import main
from contracts.messages import Entity, TaggedTweet, Tweet

_WORDS = ("Taylor Swift sings in Paris tonight with Google and Disney",
          "Barack Obama met Angela Merkel in Berlin about Microsoft",
          "New York Yankees beat Boston Red Sox at Fenway Park",
          "Elon Musk says Tesla will open a factory near London",
          "Lionel Messi joined Inter Miami after leaving Paris Saint Germain")


def tweets(n: int, prefix: str = "t", now: datetime | None = None) -> list[Tweet]:
    """Tweets created during the last half hour, so Redis live sets cover all of them."""
    now = now or datetime.now(timezone.utc)
    return [Tweet(id=f"{prefix}{i}", text=f"{_WORDS[i % len(_WORDS)]} #{i}",
                  created_at=now - timedelta(minutes=i % 30), user=f"u{i}", lang="en")
            for i in range(n)]


def tagged(tweet: Tweet, version: str = "v1") -> TaggedTweet:
    """A tagged copy with the first two words as one entity (offsets are right)."""
    end = len(" ".join(tweet.text.split()[:2]))
    return TaggedTweet(**tweet.model_dump(), model_name="test", model_version=version,
                       entities=[Entity(start=0, end=end, text=tweet.text[:end], label="person",
                                        score=0.9)])


def produce(bootstrap: str, topic: str, values: Iterable[bytes | Any],
            timestamps_ms: Iterable[int | None] | None = None, partitions: int | None = None) -> None:
    """Send ``values``; with ``partitions``, round-robin over that many so each gets some."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        values = list(values)
        stamps = list(timestamps_ms) if timestamps_ms is not None else [None] * len(values)
        for i, (value, ts) in enumerate(zip(values, stamps)):
            if not isinstance(value, bytes):
                value = value.model_dump_json().encode()
            producer.send(topic, value=value, timestamp_ms=ts,
                          partition=None if partitions is None else i % partitions)
        producer.flush()
    finally:
        producer.close()


def replay(capsys: pytest.CaptureFixture[str], *args: str, expect_rc: int = 0) -> dict[str, Any]:
    """Run `tweetner replay ... --json` and return its summary."""
    capsys.readouterr()
    rc = main(["replay", *args, "--json", "--no-progress", "--idle-timeout", "5"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == expect_rc, out
    return json.loads(out[-1])


def dump_all(engine: Engine) -> dict[str, list[tuple]]:
    """Every column of every row of the sink tables (write stamps and ids included)."""
    order = {"tweets": "id", "mentions": "id", "trend_minute": "1, 2, 3", "trend_hour": "1, 2, 3"}
    with engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY {o}"))]
                for t, o in order.items()}


def bucket_mismatches(engine: Engine) -> list[tuple]:
    """Trend buckets (minute and hour) that disagree with a recount of current mentions."""
    sql = """
        WITH minute AS (
            SELECT bucket_start, label, normalized AS entity, count(*) AS n
            FROM current_mentions WHERE normalized <> '' GROUP BY 1, 2, 3),
        hour AS (
            SELECT date_trunc('hour', bucket_start, 'UTC') AS bucket_start, label, entity,
                   sum(n) AS n FROM minute GROUP BY 1, 2, 3)
        SELECT 'minute', * FROM minute r FULL JOIN trend_minute t USING (bucket_start, label, entity)
        WHERE r.n IS DISTINCT FROM t.count
        UNION ALL
        SELECT 'hour', * FROM hour r FULL JOIN trend_hour t USING (bucket_start, label, entity)
        WHERE r.n IS DISTINCT FROM t.count
    """
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def sql_minutes(engine: Engine) -> dict[tuple[int, str, str], int]:
    with engine.connect() as conn:
        return {(int(b.timestamp()) // 60, lab, ent): n for b, lab, ent, n in conn.execute(text(
            "SELECT bucket_start, label, entity, count FROM trend_minute "
            "WHERE bucket_start > now() - interval '55 minutes'"))}


def redis_minutes(client: Any, prefix: str) -> dict[tuple[int, str, str], int]:
    """The all-labels live sets as {(epoch minute, label, entity): count}."""
    out = {}
    for key in client.scan_iter(f"{prefix}live:*", count=1000):
        parts = key[len(prefix):].split(":")
        if len(parts) != 3 or parts[1] != "*":
            continue
        for member, score in client.zrange(key, 0, -1, withscores=True):
            label, entity = member.split("\x1f", 1)
            if score:
                out[(int(parts[2]), label, entity)] = int(score)
    return out
