"""Redis in front of the trend queries.

Two layers, both under ``settings.redis_prefix``:

* live sets: one sorted set per minute bucket and label (plus label ``*`` for all labels),
  member ``label\\x1fentity``, score = count. They change only by the bucket deltas of a
  :class:`~sink.writer.WriteResult` (what PostgreSQL newly counted), and expire once their minute
  is older than ``live_horizon``. A marker key says from which minute they are complete; top
  queries for windows inside it are answered by unioning the minute sets.
* answers: the JSON answer of a top/trending query, keyed by kind, label, window, limit,
  parameters and the minute asked about, kept ``cache_ttl_s`` seconds (that bounds staleness).
  A miss is recomputed from the live sets (top) or PostgreSQL (trending, or top when the live
  sets are not complete) and stored.

Redis failures never propagate: writes to PostgreSQL go on, reads fall back to PostgreSQL, and a
failure marks the live sets dirty. The first write that reaches Redis again *resyncs* them from
trend_minute (the marker is also missing after a Redis restart, which triggers the same resync);
answers heal by their TTL.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, TypeVar

import redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from sink import trends
from sink.settings import SinkSettings
from sink.trends import TrendRow, query_time
from sink.writer import BucketDelta, WriteResult

log = logging.getLogger(__name__)

T = TypeVar("T")
_SEP = "\x1f"
ALL_LABELS = "*"
# The marker outlives writes by this much: if nothing applies deltas for that long (no sink
# running, or writers that bypass the cache), readers stop trusting the live sets.
_MARKER_TTL_S = 600
_WARN_EVERY_S = 30.0


def _epoch_minute(ts: datetime) -> int:
    return int(ts.timestamp()) // 60


class TrendCache:
    def __init__(self, settings: SinkSettings, engine: Engine,
                 client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.prefix = settings.redis_prefix
        self.client = client or redis.Redis.from_url(
            settings.redis_url, decode_responses=True,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s)
        self.horizon_min = max(1, int(settings.live_horizon.total_seconds() // 60))
        self._dirty = True  # nothing known about Redis yet: first write checks the marker
        self._last_warning = 0.0

    # keys ---------------------------------------------------------------------------------
    def _live_key(self, label: str, minute: int) -> str:
        return f"{self.prefix}live:{label}:{minute}"

    @property
    def _marker_key(self) -> str:
        return f"{self.prefix}live:complete_from"

    def _answer_key(self, kind: str, label: str | None, window: timedelta, limit: int,
                    now: datetime, extra: str = "") -> str:
        return (f"{self.prefix}answer:{kind}:{label or ALL_LABELS}:{int(window.total_seconds())}s:"
                f"{limit}:{extra}:{_epoch_minute(now)}")

    def _warn(self, what: str, exc: Exception) -> None:
        if time.monotonic() - self._last_warning > _WARN_EVERY_S:
            self._last_warning = time.monotonic()
            source = "Redis" if isinstance(exc, redis.RedisError) else "PostgreSQL"
            log.warning("%s unavailable for the trend cache (%s): %s; PostgreSQL stays "
                        "authoritative, the live sets resync later", source, what, exc)

    def _guard(self, what: str, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except (redis.RedisError, DBAPIError) as exc:
            # DBAPIError: a resync could not read PostgreSQL; the sets stay dirty until one can.
            self._dirty = True
            self._warn(what, exc)
            return default

    # writes -------------------------------------------------------------------------------
    def apply(self, result: WriteResult | Iterable[BucketDelta]) -> bool:
        """Apply a committed write's bucket deltas to the live sets; False if Redis is down."""
        deltas = result.deltas if isinstance(result, WriteResult) else list(result)
        return self._guard("apply", lambda: self._apply(deltas), False)

    def _apply(self, deltas: list[BucketDelta]) -> bool:
        if self._dirty or not self.client.exists(self._marker_key):
            # Missed deltas (outage, restart, first run): rebuild instead. The write being
            # applied is already committed, so the rebuild includes it.
            return self._resync()
        oldest = _epoch_minute(datetime.now(timezone.utc)) - self.horizon_min
        pipe = self.client.pipeline(transaction=False)
        touched: dict[str, int] = {}
        shrunk: set[str] = set()
        for d in deltas:
            minute = _epoch_minute(d.bucket_start)
            if minute <= oldest:
                continue  # outside every live window; PostgreSQL has it
            member = f"{d.label}{_SEP}{d.entity}"
            for label in (d.label, ALL_LABELS):
                key = self._live_key(label, minute)
                pipe.zincrby(key, d.delta, member)
                touched[key] = minute
                if d.delta < 0:
                    shrunk.add(key)
        for key in shrunk:
            pipe.zremrangebyscore(key, "-inf", 0)
        for key, minute in touched.items():
            pipe.expireat(key, (minute + self.horizon_min + 2) * 60)
        pipe.expire(self._marker_key, _MARKER_TTL_S)
        pipe.execute()
        return True

    def resync(self) -> bool:
        """Rebuild the live sets from trend_minute; False if Redis is down."""
        return self._guard("resync", self._resync, False)

    def _resync(self) -> bool:
        now_min = _epoch_minute(datetime.now(timezone.utc))
        first = now_min - self.horizon_min + 1
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT bucket_start, label, entity, count FROM trend_minute "
                "WHERE bucket_start >= to_timestamp(:first * 60) AND count > 0"),
                {"first": first}).all()
        sets: dict[str, dict[str, float]] = defaultdict(dict)
        for bucket, label, entity, count in rows:
            minute = _epoch_minute(bucket)
            member = f"{label}{_SEP}{entity}"
            for lab in (label, ALL_LABELS):
                sets[self._live_key(lab, minute)][member] = float(count)
        stale = list(self.client.scan_iter(f"{self.prefix}live:*", count=1000))
        pipe = self.client.pipeline(transaction=True)
        if stale:
            pipe.delete(*stale)
        for key, members in sets.items():
            pipe.zadd(key, members)
            pipe.expireat(key, (int(key.rsplit(":", 1)[1]) + self.horizon_min + 2) * 60)
        pipe.set(self._marker_key, first, ex=_MARKER_TTL_S)
        pipe.execute()
        self._dirty = False
        log.info("Redis live trend sets resynced from PostgreSQL (%d buckets)", len(sets))
        return True

    # reads --------------------------------------------------------------------------------
    def live_top(self, window: timedelta, label: str | None = None, limit: int = 20,
                 now: datetime | None = None) -> list[TrendRow] | None:
        """Top entities from the live sets, or None when they do not cover the window."""
        now = query_time(now)
        minutes = int(window.total_seconds() // 60)
        if window.total_seconds() % 60 or not 0 < minutes <= self.horizon_min:
            return None
        last = _epoch_minute(now)
        first = last - minutes + 1
        complete_from = self.client.get(self._marker_key)
        if complete_from is None or first < int(complete_from):
            return None
        keys = [self._live_key(label or ALL_LABELS, m) for m in range(first, last + 1)]
        tmp = f"{self.prefix}tmp:{uuid.uuid4().hex}"
        pipe = self.client.pipeline(transaction=False)
        pipe.zunionstore(tmp, keys)
        pipe.zrevrange(tmp, limit - 1, limit - 1, withscores=True)
        pipe.expire(tmp, 5)
        _, cut, _ = pipe.execute()
        # Everything scoring at least the limit-th score, so ties are broken like SQL does
        # (count desc, label, entity) rather than by Redis's reverse member order.
        floor = cut[0][1] if cut else 1
        pipe.zrangebyscore(tmp, max(floor, 1), "+inf", withscores=True)
        pipe.delete(tmp)
        members, _ = pipe.execute()
        rows = []
        for member, score in members:
            lab, entity = member.split(_SEP, 1)
            rows.append(TrendRow(entity, lab, int(score), float(int(score))))
        rows.sort(key=lambda r: (-r.count, r.label, r.entity))
        return rows[:limit]

    def _cached(self, key: str, compute: Callable[[], list[TrendRow]]) -> list[TrendRow]:
        raw = self._guard("read", lambda: self.client.get(key), None)
        if raw is not None:
            return [TrendRow(**d) for d in json.loads(raw)]
        rows = compute()
        payload = json.dumps([r.to_dict() for r in rows])
        self._guard("store", lambda: self.client.set(
            key, payload, px=int(self.settings.cache_ttl_s * 1000)), None)
        return rows

    def top(self, window: timedelta = trends.DEFAULT_WINDOW, label: str | None = None,
            limit: int = 20, now: datetime | None = None) -> list[TrendRow]:
        now = query_time(now)

        def compute() -> list[TrendRow]:
            live = self._guard("live read", lambda: self.live_top(window, label, limit, now), None)
            if live is not None:
                return live
            with self.engine.connect() as conn:
                return trends.top_entities(conn, window, label, limit, now)

        return self._cached(self._answer_key("top", label, window, limit, now), compute)

    def trending(self, window: timedelta = trends.DEFAULT_WINDOW, label: str | None = None,
                 limit: int = 20, now: datetime | None = None,
                 baseline: timedelta = trends.DEFAULT_BASELINE,
                 min_count: int = trends.DEFAULT_MIN_COUNT) -> list[TrendRow]:
        now = query_time(now)

        def compute() -> list[TrendRow]:
            with self.engine.connect() as conn:
                return trends.trending_entities(conn, window, label, limit, now, baseline,
                                                min_count)

        extra = f"{int(baseline.total_seconds())}s,{min_count}"
        return self._cached(self._answer_key("trending", label, window, limit, now, extra), compute)

    def close(self) -> None:
        self._guard("close", self.client.close, None)
