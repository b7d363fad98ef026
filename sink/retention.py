"""Retention: how long each granularity is kept (durations in SinkSettings).

Trend buckets are history in their own right: pruning tweets (and with them their mentions)
does not change the trend tables; each trend table is pruned on its own schedule. Minute buckets
must outlive the longest live window and the trending window, hour buckets the baselines.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, delete

from sink.schema import MentionRow, TrendHour, TrendMinute, TweetRow
from sink.settings import SinkSettings


# Mentions are deleted by tweet id in statements of this many ids (bound parameters are finite).
_IDS_PER_DELETE = 10_000


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
        # Tweets first, their ids returned, then their mentions: a writer that locked one of
        # these tweets commits before its row goes, so mentions it added are seen and deleted
        # too; one that comes after finds the tweet gone and stores it anew, whole.
        gone = conn.execute(delete(TweetRow).where(
            TweetRow.created_at < now - settings.tweet_retention).returning(TweetRow.id)).scalars().all()
        for start in range(0, len(gone), _IDS_PER_DELETE):
            conn.execute(delete(MentionRow).where(
                MentionRow.tweet_id.in_(gone[start:start + _IDS_PER_DELETE])))
    return PruneResult(minutes, hours, len(gone))
