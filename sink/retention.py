"""Retention: how long each granularity is kept (durations in SinkSettings).

Trend buckets are history in their own right: pruning tweets (and, by cascade, their mentions)
does not change the trend tables; each trend table is pruned on its own schedule. Minute buckets
must outlive the longest live window and the trending window, hour buckets the baselines.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, delete

from sink.schema import TrendHour, TrendMinute, TweetRow
from sink.settings import SinkSettings


@dataclass(frozen=True)
class PruneResult:
    trend_minute: int
    trend_hour: int
    tweets: int


def prune(engine: Engine, settings: SinkSettings, now: datetime | None = None) -> PruneResult:
    now = now or datetime.now(timezone.utc)
    with engine.begin() as conn:
        minutes = conn.execute(delete(TrendMinute).where(
            TrendMinute.bucket_start < now - settings.minute_retention)).rowcount
        hours = conn.execute(delete(TrendHour).where(
            TrendHour.bucket_start < now - settings.hour_retention)).rowcount
        tweets = conn.execute(delete(TweetRow).where(
            TweetRow.created_at < now - settings.tweet_retention)).rowcount
    return PruneResult(minutes, hours, tweets)
