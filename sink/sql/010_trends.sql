-- Analyst-facing trend queries. Applied by `tweetner sink init-db` (sink.schema.create_schema)
-- after the tables exist; every statement is re-runnable. Names are unqualified on purpose:
-- they resolve through search_path, so the same file serves any schema.
--
-- Window semantics shared by all functions (and by the Redis cache): a window of N minutes at
-- time p_now covers the N minute buckets whose start is in (p_now - window, p_now], i.e. the
-- current, still-filling minute and the N-1 minutes before it.

DROP VIEW IF EXISTS top_entities_15m;
DROP VIEW IF EXISTS trending_now;
DROP VIEW IF EXISTS current_mentions;
DROP FUNCTION IF EXISTS top_entities(interval, text, integer, timestamptz);
DROP FUNCTION IF EXISTS trending_entities(interval, text, integer, interval, integer, timestamptz, double precision);
DROP FUNCTION IF EXISTS entity_timeline(text, text, timestamptz, timestamptz, text);

-- Mentions of each tweet's current model version (older versions stay in `mentions`).
CREATE VIEW current_mentions AS
SELECT m.*, t.created_at, date_trunc('minute', t.created_at, 'UTC') AS bucket_start
FROM mentions m
JOIN tweets t ON t.id = m.tweet_id AND t.model_version = m.model_version;

-- Most mentioned entities in the window, optionally for one label. score = count.
CREATE FUNCTION top_entities(
    p_window interval DEFAULT interval '15 minutes',
    p_label  text DEFAULT NULL,
    p_limit  integer DEFAULT 20,
    p_now    timestamptz DEFAULT now())
RETURNS TABLE (entity text, label text, count bigint, score double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT tm.entity, tm.label, sum(tm.count)::bigint, sum(tm.count)::double precision
    FROM trend_minute tm
    WHERE tm.bucket_start > p_now - p_window
      AND tm.bucket_start <= p_now
      AND (p_label IS NULL OR tm.label = p_label)
    GROUP BY tm.entity, tm.label
    HAVING sum(tm.count) > 0
    ORDER BY 3 DESC, 2, 1
    LIMIT p_limit
$$;

-- Entities whose count in the window is unusual against their own baseline.
-- expected = (baseline total) * window / baseline, from the hourly rollup over the p_baseline
-- of whole hours that end where the hour holding the window's start begins;
-- score = (count - expected) / sqrt(expected + p_smoothing): a Poisson z-score, smoothed so an
-- entity with no history scores about its count instead of infinity. Entities below
-- p_min_count mentions in the window are left out so rare noise cannot win.
CREATE FUNCTION trending_entities(
    p_window    interval DEFAULT interval '15 minutes',
    p_label     text DEFAULT NULL,
    p_limit     integer DEFAULT 20,
    p_baseline  interval DEFAULT interval '24 hours',
    p_min_count integer DEFAULT 5,
    p_now       timestamptz DEFAULT now(),
    p_smoothing double precision DEFAULT 1.0)
RETURNS TABLE (entity text, label text, count bigint, score double precision)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH cur AS (
        SELECT tm.label, tm.entity, sum(tm.count)::bigint AS n
        FROM trend_minute tm
        WHERE tm.bucket_start > p_now - p_window
          AND tm.bucket_start <= p_now
          AND (p_label IS NULL OR tm.label = p_label)
        GROUP BY tm.label, tm.entity
        HAVING sum(tm.count) >= greatest(p_min_count, 1)
    ), scored AS (
        SELECT c.entity, c.label, c.n,
               coalesce(b.total, 0)::double precision
                 * (extract(epoch FROM p_window) / extract(epoch FROM p_baseline)) AS expected
        FROM cur c
        LEFT JOIN LATERAL (
            SELECT sum(th.count) AS total
            FROM trend_hour th
            WHERE th.entity = c.entity AND th.label = c.label
              AND th.bucket_start >= date_trunc('hour', p_now - p_window, 'UTC') - p_baseline
              AND th.bucket_start <  date_trunc('hour', p_now - p_window, 'UTC')
        ) b ON true
    )
    SELECT s.entity, s.label, s.n, (s.n - s.expected) / sqrt(s.expected + p_smoothing)
    FROM scored s
    ORDER BY 4 DESC, 2, 1
    LIMIT p_limit
$$;

-- One entity's counts per minute or hour bucket from p_from to p_to, zero-filled.
-- p_entity is the normalized form (lower case, no #/@, CamelCase hashtags split).
CREATE FUNCTION entity_timeline(
    p_entity text,
    p_label  text DEFAULT NULL,
    p_from   timestamptz DEFAULT now() - interval '24 hours',
    p_to     timestamptz DEFAULT now(),
    p_bucket text DEFAULT 'hour')
RETURNS TABLE (bucket_start timestamptz, count bigint)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH buckets AS (
        SELECT generate_series(date_trunc(p_bucket, p_from, 'UTC'), date_trunc(p_bucket, p_to, 'UTC'),
                               ('1 ' || p_bucket)::interval) AS b
    ), counts AS (
        SELECT tm.bucket_start AS b, sum(tm.count) AS n
        FROM trend_minute tm
        WHERE p_bucket = 'minute' AND tm.entity = p_entity
          AND (p_label IS NULL OR tm.label = p_label)
          AND tm.bucket_start >= date_trunc('minute', p_from, 'UTC') AND tm.bucket_start <= p_to
        GROUP BY tm.bucket_start
        UNION ALL
        SELECT th.bucket_start, sum(th.count)
        FROM trend_hour th
        WHERE p_bucket = 'hour' AND th.entity = p_entity
          AND (p_label IS NULL OR th.label = p_label)
          AND th.bucket_start >= date_trunc('hour', p_from, 'UTC') AND th.bucket_start <= p_to
        GROUP BY th.bucket_start
    )
    SELECT buckets.b, coalesce(sum(counts.n), 0)::bigint
    FROM buckets LEFT JOIN counts ON counts.b = buckets.b
    GROUP BY buckets.b
    ORDER BY buckets.b
$$;

-- Dashboard-friendly views with the defaults baked in.
CREATE VIEW top_entities_15m AS SELECT * FROM top_entities(interval '15 minutes');
CREATE VIEW trending_now AS SELECT * FROM trending_entities(interval '15 minutes');
