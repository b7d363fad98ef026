"""Every knob of the sink, read from the environment in one place."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Mapping

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(env.get(name, default))


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return float(env.get(name, default))


@dataclass(frozen=True)
class SinkSettings:
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    # Tables live in this schema; tests give every session its own so runs never collide.
    database_schema: str = "public"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tweetner:"
    kafka_bootstrap: str = "127.0.0.1:9092"
    tagged_topic: str = "tweets.tagged"
    deadletter_topic: str = "tweets.deadletter"
    sink_group: str = "tweetner-sink"
    # A batch is written when it holds this many records or its oldest record waited this long.
    batch_size: int = 500
    flush_interval_s: float = 1.0
    # PostgreSQL outage handling: exponential backoff between these bounds, forever.
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    # Retention (see sink.retention): minute buckets feed live windows and the trending window,
    # hour buckets feed baselines and long timelines, mentions/tweets are the raw record.
    minute_retention: timedelta = timedelta(days=3)
    hour_retention: timedelta = timedelta(days=400)
    tweet_retention: timedelta = timedelta(days=30)
    # Redis: per-minute sorted sets cover this much history, so windows up to it are served live.
    live_horizon: timedelta = timedelta(hours=1)
    # Cached answers (top/trending per window and label) are at most this old.
    cache_ttl_s: float = 10.0
    redis_timeout_s: float = 0.5
    # Kafka group membership: short timeouts make group joins fast on Tansu and after restarts.
    heartbeat_interval_ms: int = 1000
    session_timeout_ms: int = 6000
    # kafka-python waits up to 500 ms for a fetch to fill; at tweet rates that is pure latency.
    fetch_max_wait_ms: int = 100
    max_poll_interval_ms: int = 300000

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.database_schema):
            raise ValueError(f"DATABASE_SCHEMA must be a plain SQL identifier, got {self.database_schema!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "SinkSettings":
        env = os.environ if env is None else env
        d = cls()
        values = dict(
            database_url=env.get("DATABASE_URL", d.database_url),
            database_schema=env.get("DATABASE_SCHEMA", d.database_schema),
            redis_url=env.get("REDIS_URL", d.redis_url),
            redis_prefix=env.get("REDIS_PREFIX", d.redis_prefix),
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP", d.kafka_bootstrap),
            tagged_topic=env.get("TAGGED_TOPIC", d.tagged_topic),
            deadletter_topic=env.get("DEADLETTER_TOPIC", d.deadletter_topic),
            sink_group=env.get("SINK_GROUP", d.sink_group),
            batch_size=_int(env, "SINK_BATCH_SIZE", d.batch_size),
            flush_interval_s=_float(env, "SINK_FLUSH_INTERVAL_S", d.flush_interval_s),
            retry_initial_s=_float(env, "SINK_RETRY_INITIAL_S", d.retry_initial_s),
            retry_max_s=_float(env, "SINK_RETRY_MAX_S", d.retry_max_s),
            minute_retention=timedelta(hours=_float(env, "TREND_MINUTE_RETENTION_HOURS",
                                                    d.minute_retention.total_seconds() / 3600)),
            hour_retention=timedelta(days=_float(env, "TREND_HOUR_RETENTION_DAYS",
                                                 d.hour_retention.days)),
            tweet_retention=timedelta(days=_float(env, "TWEET_RETENTION_DAYS", d.tweet_retention.days)),
            live_horizon=timedelta(minutes=_float(env, "TREND_LIVE_HORIZON_MINUTES",
                                                  d.live_horizon.total_seconds() / 60)),
            cache_ttl_s=_float(env, "TREND_CACHE_TTL_S", d.cache_ttl_s),
            redis_timeout_s=_float(env, "REDIS_TIMEOUT_S", d.redis_timeout_s),
            heartbeat_interval_ms=_int(env, "SINK_HEARTBEAT_MS", d.heartbeat_interval_ms),
            session_timeout_ms=_int(env, "SINK_SESSION_TIMEOUT_MS", d.session_timeout_ms),
            fetch_max_wait_ms=_int(env, "SINK_FETCH_MAX_WAIT_MS", d.fetch_max_wait_ms),
            max_poll_interval_ms=_int(env, "SINK_MAX_POLL_INTERVAL_MS", d.max_poll_interval_ms),
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> "SinkSettings":
        return replace(self, **changes)  # type: ignore[arg-type]
