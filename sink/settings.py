"""Every knob of the sink, read from the environment in one place (see contracts.settings)."""
from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from contracts.settings import StageSettings


def _in(unit: str) -> BeforeValidator:
    """A duration whose variable gives a number of ``unit`` (``TWEET_RETENTION_DAYS=30``)."""
    def parse(value: Any) -> Any:
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return timedelta(**{unit: float(value)})
        return value
    return BeforeValidator(parse)


class SinkSettings(StageSettings):
    database_url: str = Field("postgresql+psycopg2://postgres@127.0.0.1:5432/test",
                              validation_alias="DATABASE_URL", min_length=1)
    # Tables live in this schema; tests give every session its own so runs never collide.
    database_schema: str = Field("public", validation_alias="DATABASE_SCHEMA",
                                 pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    redis_prefix: str = Field("tweetner:", validation_alias="REDIS_PREFIX")
    sink_group: str = Field("tweetner-sink", validation_alias="SINK_GROUP", min_length=1)
    # A batch is written when it holds this many records or its oldest record waited this long.
    # One transaction per batch: its commit and fixed statements are what a saturated sink
    # waits for, so large batches pay (stand-in benchmark: 500 -> 4,500, 2,000 -> 5,600 tweets/s);
    # at lower rates the interval decides, so latency stays the same.
    batch_size: int = Field(2000, validation_alias="SINK_BATCH_SIZE", gt=0)
    flush_interval_s: float = Field(1.0, validation_alias="SINK_FLUSH_INTERVAL_S", gt=0)
    # Batches stored at once, one PostgreSQL connection each (only batches without a tweet in
    # common overlap): PostgreSQL's work on one batch runs beside the sink's on the next.
    writers: int = Field(2, validation_alias="SINK_WRITERS", ge=1, le=16)
    # PostgreSQL outage handling: exponential backoff between these bounds, forever.
    retry_initial_s: float = Field(0.5, validation_alias="SINK_RETRY_INITIAL_S", gt=0)
    retry_max_s: float = Field(30.0, validation_alias="SINK_RETRY_MAX_S", gt=0)
    # Retention (see sink.retention): minute buckets feed live windows and the trending window,
    # hour buckets feed baselines and long timelines, mentions/tweets are the raw record.
    minute_retention: Annotated[timedelta, _in("hours")] = Field(
        timedelta(days=3), validation_alias="TREND_MINUTE_RETENTION_HOURS")
    hour_retention: Annotated[timedelta, _in("days")] = Field(
        timedelta(days=400), validation_alias="TREND_HOUR_RETENTION_DAYS")
    tweet_retention: Annotated[timedelta, _in("days")] = Field(
        timedelta(days=30), validation_alias="TWEET_RETENTION_DAYS")
    # Redis: per-minute sorted sets cover this much history, so windows up to it are served live.
    live_horizon: Annotated[timedelta, _in("minutes")] = Field(
        timedelta(hours=1), validation_alias="TREND_LIVE_HORIZON_MINUTES")
    # Cached answers (top/trending per window and label) are at most this old.
    cache_ttl_s: float = Field(10.0, validation_alias="TREND_CACHE_TTL_S", ge=0)
    redis_timeout_s: float = Field(0.5, validation_alias="REDIS_TIMEOUT_S", gt=0)
    # Kafka group membership: short timeouts make group joins fast on Tansu and after restarts.
    heartbeat_interval_ms: int = Field(1000, validation_alias="SINK_HEARTBEAT_MS", gt=0)
    session_timeout_ms: int = Field(6000, validation_alias="SINK_SESSION_TIMEOUT_MS", gt=0)
    # kafka-python waits up to 500 ms for a fetch to fill; at tweet rates that is pure latency.
    fetch_max_wait_ms: int = Field(100, validation_alias="SINK_FETCH_MAX_WAIT_MS", ge=0)
    max_poll_interval_ms: int = Field(300000, validation_alias="SINK_MAX_POLL_INTERVAL_MS", gt=0)
    # /metrics (Prometheus) and /health (sink.http); unset = no HTTP port, 0 = any free port.
    http_host: str = Field("127.0.0.1", validation_alias="SINK_HTTP_HOST")
    http_port: int | None = Field(None, validation_alias="SINK_HTTP_PORT", ge=0, le=65535)
