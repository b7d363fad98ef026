"""`tweetner bench trends`: trend query latency on generated data, PostgreSQL vs Redis.

Data is generated inside PostgreSQL (INSERT ... SELECT generate_series) in a scratch schema:
tweets spread evenly over 7 days, two mentions each, entities drawn from a skewed distribution
over 20,000 names in four labels, plus a few bursts in the last 15 minutes. Trend buckets are
aggregated from the generated mentions, as the writer would have produced them.
"""
from __future__ import annotations

import logging
import secrets
import statistics
import time
from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import text

from sink.settings import SinkSettings

log = logging.getLogger(__name__)

SPAN = timedelta(days=7)
ENTITIES = 20_000


def _timed(fn: Callable[[], Any], n: int) -> dict[str, float]:
    fn()  # warm caches and plans
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    # quantiles(n=20)[-1] is the 95th percentile (linear between the two nearest timings).
    return {"p50": statistics.median(times), "p95": statistics.quantiles(times, n=20, method="inclusive")[-1],
            "max": max(times)}


def _say(msg: str) -> None:
    print(msg, flush=True)


def _generate(conn: Any, rows: int) -> None:
    tweets = (rows + 1) // 2
    step_s = SPAN.total_seconds() / tweets
    # The loading pass skips what only single-row writes need (uniqueness, lookup index);
    # the trend queries under test read trend_minute/trend_hour, whose indexes stay.
    conn.execute(text("ALTER TABLE mentions DROP CONSTRAINT uq_mentions_span"))
    conn.execute(text("DROP INDEX ix_mentions_entity"))
    # Secondary trend indexes are rebuilt after the load: one sort beats millions of random inserts.
    trend_indexes = conn.execute(text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename IN ('trend_minute', 'trend_hour') AND indexname LIKE 'ix_%'")).all()
    for name, _ in trend_indexes:
        conn.execute(text(f"DROP INDEX {name}"))
    conn.execute(text("SET LOCAL synchronous_commit = off"))
    conn.execute(text("SET LOCAL work_mem = '256MB'"))
    t0 = time.perf_counter()
    conn.execute(text(f"""
        INSERT INTO tweets (id, text, created_at, model_name, model_version)
        SELECT g::text, 'bench tweet', now() - {SPAN.total_seconds()} * interval '1 second'
                 + g * {step_s} * interval '1 second', 'bench', 'v1'
        FROM generate_series(1, {tweets}) g"""))
    _say(f"  tweets: {tweets:,} rows in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    # Entity e = floor(N * u^3): a few very frequent names and a long tail.
    conn.execute(text(f"""
        INSERT INTO mentions (tweet_id, model_version, char_start, char_end, surface,
                              normalized, label, score)
        SELECT ((g + 1) / 2)::text, 'v1', (g % 2) * 20, (g % 2) * 20 + 10,
               'Entity ' || e, 'entity ' || e,
               (ARRAY['person', 'location', 'org', 'misc'])[e % 4 + 1], 0.9
        FROM (SELECT g, floor({ENTITIES} * power(random(), 3))::int AS e
              FROM generate_series(1, {rows}) g) s"""))
    _say(f"  mentions: {rows:,} rows in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    # tweet id g was created at start + g * step, so buckets come from the id: no join needed.
    conn.execute(text(f"""
        INSERT INTO trend_minute (bucket_start, label, entity, count)
        SELECT date_trunc('minute', now() - {SPAN.total_seconds()} * interval '1 second'
                          + tweet_id::bigint * {step_s} * interval '1 second'),
               label, normalized, count(*)
        FROM mentions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""))
    # Bursts: a handful of new names in the last 15 minutes, what trending should surface.
    conn.execute(text("""
        INSERT INTO trend_minute (bucket_start, label, entity, count)
        SELECT date_trunc('minute', now()) - m * interval '1 minute', 'person', 'burst ' || b, 40
        FROM generate_series(0, 14) m, generate_series(1, 5) b
        ON CONFLICT (bucket_start, label, entity) DO UPDATE
        SET count = trend_minute.count + EXCLUDED.count"""))
    conn.execute(text("""
        INSERT INTO trend_hour (bucket_start, label, entity, count)
        SELECT date_trunc('hour', bucket_start), label, entity, sum(count)
        FROM trend_minute GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""))
    for _, definition in trend_indexes:
        conn.execute(text(definition))
    _say(f"  trend buckets aggregated and indexed in {time.perf_counter() - t0:.1f}s")


def run_trends_bench(settings: SinkSettings, rows: int = 10_000_000, iterations: int = 200,
                     keep: bool = False) -> dict[str, Any]:
    from sink import trends
    from sink.cache import TrendCache
    from sink.db import make_engine
    from sink.schema import create_schema

    token = secrets.token_hex(3)
    bench = settings.with_(database_schema=f"tweetner_bench_{token}",
                           redis_prefix=f"{settings.redis_prefix}bench:{token}:",
                           cache_ttl_s=600.0)
    engine = make_engine(bench)
    started = time.perf_counter()
    _say(f"generating {rows:,} mention rows in schema {bench.database_schema}")
    create_schema(engine)
    try:
        with engine.begin() as conn:
            _generate(conn, rows)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("trend_minute", "trend_hour"):
                conn.execute(text(f"VACUUM ANALYZE {table}"))
            counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                      for t in ("mentions", "trend_minute", "trend_hour")}
        setup_s = time.perf_counter() - started
        _say(f"data ready in {setup_s:.1f}s: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))

        hour, quarter = timedelta(hours=1), timedelta(minutes=15)
        with engine.connect() as conn:
            pg_top = _timed(lambda: trends.top_entities(conn, hour, None, 20), iterations)
            pg_top_label = _timed(lambda: trends.top_entities(conn, hour, "person", 20), iterations)
            pg_trending = _timed(lambda: trends.trending_entities(conn, quarter), iterations)
            trending = trends.trending_entities(conn, quarter, limit=5)
        _say(f"PostgreSQL top-20 last hour:           p50 {pg_top['p50']:.2f} ms  "
             f"p95 {pg_top['p95']:.2f} ms")
        _say(f"PostgreSQL top-20 last hour, person:   p50 {pg_top_label['p50']:.2f} ms  "
             f"p95 {pg_top_label['p95']:.2f} ms")
        _say(f"PostgreSQL trending 15m vs 24h:        p50 {pg_trending['p50']:.2f} ms  "
             f"p95 {pg_trending['p95']:.2f} ms  (top: "
             + ", ".join(f"{r.entity} {r.score:.0f}" for r in trending) + ")")

        cache = TrendCache(bench, engine)
        if not cache.resync():
            raise RuntimeError("Redis is not reachable")
        iters = iterations * 5
        redis_top = _timed(lambda: cache.top(hour, None, 20), iters)
        redis_trending = _timed(lambda: cache.trending(quarter), iters)
        live_top = _timed(lambda: cache.live_top(hour, None, 20), iterations)
        _say(f"Redis top-20 last hour (cached answer): p50 {redis_top['p50']:.3f} ms  "
             f"p95 {redis_top['p95']:.3f} ms")
        _say(f"Redis trending (cached answer):         p50 {redis_trending['p50']:.3f} ms  "
             f"p95 {redis_trending['p95']:.3f} ms")
        _say(f"Redis top-20 last hour from live sets:  p50 {live_top['p50']:.2f} ms  "
             f"p95 {live_top['p95']:.2f} ms (union of 60 minute sets, on a cache miss)")
        with engine.connect() as conn:
            same = cache.live_top(hour, None, 20) == trends.top_entities(conn, hour, None, 20)
        _say(f"live sets agree with SQL: {same}")
        return {
            "rows": counts["mentions"],
            "trend_minute_rows": counts["trend_minute"],
            "trend_hour_rows": counts["trend_hour"],
            "pg_top_p50_ms": round(pg_top["p50"], 3),
            "pg_top_p95_ms": round(pg_top["p95"], 3),
            "pg_top_label_p95_ms": round(pg_top_label["p95"], 3),
            "pg_trending_p50_ms": round(pg_trending["p50"], 3),
            "pg_trending_p95_ms": round(pg_trending["p95"], 3),
            "redis_p50_ms": round(redis_top["p50"], 4),
            "redis_p95_ms": round(redis_top["p95"], 4),
            "redis_trending_p95_ms": round(redis_trending["p95"], 4),
            "redis_live_p95_ms": round(live_top["p95"], 3),
            "iterations": iterations,
            "setup_s": round(setup_s, 1),
            "total_s": round(time.perf_counter() - started, 1),
        }
    finally:
        _cleanup(bench, engine, keep)


def _cleanup(bench: SinkSettings, engine: Any, keep: bool) -> None:
    import redis

    try:
        client = redis.Redis.from_url(bench.redis_url)
        keys = list(client.scan_iter(f"{bench.redis_prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        log.warning("could not clean Redis keys under %s", bench.redis_prefix)
    engine.dispose()
    if not keep:
        from sink.db import make_engine

        public = make_engine(bench.with_(database_schema="public"))
        with public.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{bench.database_schema}" CASCADE'))
        public.dispose()
