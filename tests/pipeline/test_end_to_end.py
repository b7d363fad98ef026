"""The pipeline on real servers: ingest -> Tansu -> Faust tagger (tiny model) -> sink -> PG + Redis.

Acceptance of issue 3: every good tweet exactly once in PostgreSQL with its mentions, every bad
record in the dead-letter topic with a reason, trend buckets equal to mention counts, the Redis
leaderboard equal to SQL, replays changing nothing, a SIGKILLed worker losing nothing, and the
sink riding out a PostgreSQL restart and a Redis outage.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import Engine, text

from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.sources import read_source
from sink.db import make_engine
from sink.settings import SinkSettings
from tweetner.messages import DeadLetter, TaggedTweet
from tweetner.runner import PipelineProcesses, StoredProbe
from tweetner.synthetic import SyntheticStream
from tests.pipeline.helpers import group_lag, read_topic, wait_for

pytestmark = pytest.mark.timeout(300)

_BAD_LINES = [
    b'{"id": "bad-json", "text": "unterminated',
    b'{"id": "no-text"}',
    b'{"id": "empty", "text": "  "}',
    b'{"id": "latin1", "text": "caf\xe9"}',
    b'{"id": "huge", "text": "' + b"z" * 20_000 + b'"}',
]


def _write_input(path: Path, good: int, bad: int) -> tuple[set[str], dict[int, bytes]]:
    """JSON Lines with ``good`` synthetic tweets and ``bad`` malformed lines spread among them."""
    tweets = list(SyntheticStream(seed=11, tweets_per_second=100).tweets(good))
    every = (good + bad) // bad
    lines: list[bytes] = []
    bad_at: dict[int, bytes] = {}
    it = iter(tweets)
    while len(lines) < good + bad:
        if len(bad_at) < bad and (len(lines) + 1) % every == 0:
            line = _BAD_LINES[len(bad_at) % len(_BAD_LINES)]
            bad_at[len(lines) + 1] = line
        else:
            t = next(it)
            line = json.dumps({"id": t.id, "text": t.text, "created_at": t.created_at.isoformat(),
                               "user": t.user, "lang": t.lang}).encode()
        lines.append(line)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return {t.id for t in tweets}, bad_at


def _ingest_file(env: dict[str, str], path: Path):
    service = IngestService(IngestSettings.from_env(env))
    service.start()
    try:
        return service.run(read_source(str(path)))
    finally:
        service.stop()


def _ingest_synthetic(env: dict[str, str], n: int, rate: float, seed: int) -> tuple[list[str], threading.Thread]:
    service = IngestService(IngestSettings.from_env(env))
    service.produced_ids = []
    tweets = SyntheticStream(seed=seed, tweets_per_second=rate).tweets(n)

    def run() -> None:
        service.start()
        service.produce_tweets(tweets, rate=rate)
        service.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return service.produced_ids, thread


@pytest.fixture
def procs(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[PipelineProcesses]:
    processes = PipelineProcesses(pipeline_env, tmp_path / "logs", workers=1)
    yield processes
    processes.stop()


def _alive(procs: PipelineProcesses):
    def check() -> None:
        dead = procs.check_alive()
        if dead:
            logs = "\n".join(f"--- {name}.log:\n" + (procs.log_dir / f"{name}.log").read_text()[-6000:]
                             for name in dead)
            codes = {c.name: c.proc.returncode for c in [*procs.workers, procs.sink]
                     if c is not None and c.proc is not None and c.name in dead}
            raise AssertionError(f"{dead} died (exit codes {codes}):\n{logs}")
    return check


def _wait_stored(probe: StoredProbe, ids, procs: PipelineProcesses, timeout_s: float = 150) -> None:
    probe.expect(ids)
    wait_for(lambda: probe.poll() >= len(set(ids)), timeout_s, "tweets stored", _alive(procs))


def _wait_drained(env: dict[str, str], timeout_s: float = 60) -> None:
    bootstrap = env["KAFKA_BOOTSTRAP"]
    lags: dict[str, int] = {}

    def drained() -> bool:
        lags["tagger"] = group_lag(bootstrap, env["TAGGER_GROUP"], env["TWEETS_TOPIC"])
        lags["sink"] = group_lag(bootstrap, env["SINK_GROUP"], env["TAGGED_TOPIC"])
        return lags["tagger"] == 0 and lags["sink"] == 0

    try:
        wait_for(drained, timeout_s, "tagger and sink offsets committed to the end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: lags {lags}") from None


def _sink_settings(env: dict[str, str]) -> SinkSettings:
    return SinkSettings.from_env(env)


def _assert_trends_match_mentions(engine: Engine) -> None:
    # Mentions that normalise to nothing (punctuation the random tiny model tags) are stored but
    # are not trend entities.
    with engine.connect() as conn:
        from_mentions = set(conn.execute(text(
            "SELECT bucket_start, label, normalized, count(*) FROM current_mentions "
            "WHERE normalized <> '' GROUP BY 1, 2, 3")).all())
        from_buckets = set(conn.execute(text(
            "SELECT bucket_start, label, entity, count FROM trend_minute WHERE count > 0")).all())
        total_mentions = conn.execute(text(
            "SELECT count(*) FROM current_mentions WHERE normalized <> ''")).scalar()
        total_buckets = conn.execute(text("SELECT coalesce(sum(count), 0) FROM trend_minute")).scalar()
    assert total_mentions > 0
    assert total_buckets == total_mentions
    assert from_buckets == from_mentions


def _assert_redis_matches_sql(env: dict[str, str], engine: Engine) -> None:
    from sink import trends
    from sink.cache import TrendCache

    settings = _sink_settings(env)
    cache = TrendCache(settings, engine)
    try:
        window = timedelta(minutes=15)
        live = cache.live_top(window, None, 20)
        with engine.connect() as conn:
            sql = trends.top_entities(conn, window, None, 20)
        assert live is not None, "Redis live sets do not cover the window"
        assert len(sql) > 0
        assert [(r.entity, r.label, r.count) for r in live] == [(r.entity, r.label, r.count) for r in sql]
    finally:
        cache.close()


def _snapshot(engine: Engine) -> dict[str, list]:
    out = {}
    with engine.connect() as conn:
        for table, order in (("tweets", "id"), ("mentions", "tweet_id, char_start, label"),
                             ("trend_minute", "bucket_start, label, entity"),
                             ("trend_hour", "bucket_start, label, entity")):
            out[table] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
    return out


def test_end_to_end_exactly_once_in_tables_and_replay_changes_nothing(
        pipeline_env: dict[str, str], procs: PipelineProcesses, tmp_path: Path) -> None:
    env = pipeline_env
    path = tmp_path / "tweets.jsonl"
    good_ids, bad_at = _write_input(path, good=980, bad=20)
    procs.start()
    procs.wait_ready()

    summary = _ingest_file(env, path)
    assert (summary.read, summary.produced, summary.rejected) == (1000, 980, 20)

    engine = make_engine(_sink_settings(env))
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    try:
        _wait_stored(probe, good_ids, procs)
        _wait_drained(env)

        with engine.connect() as conn:
            stored = conn.execute(text("SELECT id FROM tweets")).scalars().all()
            mentions = conn.execute(text(
                "SELECT tweet_id, char_start, char_end, label, surface FROM mentions")).all()
        assert sorted(stored) == sorted(good_ids)  # each exactly once (id is the primary key)

        tagged = [TaggedTweet.model_validate_json(r.value)
                  for r in read_topic(env["KAFKA_BOOTSTRAP"], env["TAGGED_TOPIC"])]
        assert {t.id for t in tagged} == good_ids
        expected = {(t.id, e.start, e.end, e.label, e.text) for t in tagged for e in t.entities}
        assert expected, "the tiny model found no entities at all"
        assert set(mentions) == expected and len(mentions) == len(expected)

        letters = [DeadLetter.model_validate_json(r.value)
                   for r in read_topic(env["KAFKA_BOOTSTRAP"], env["DEADLETTER_TOPIC"])]
        assert {(d.source, d.position) for d in letters} == {(str(path), n) for n in bad_at}
        assert all(d.stage == "ingest" and d.reason for d in letters)

        _assert_trends_match_mentions(engine)
        _assert_redis_matches_sql(env, engine)

        # The same records again: new Kafka records, no new rows and no changed counts.
        before = _snapshot(engine)
        again = _ingest_file(env, path)
        assert again.produced == 980
        time.sleep(1.0)
        _wait_drained(env, timeout_s=90)
        assert _snapshot(engine) == before
        _assert_redis_matches_sql(env, engine)
    finally:
        probe.close()
        engine.dispose()


def test_worker_killed_mid_stream_loses_nothing(
        pipeline_env: dict[str, str], procs: PipelineProcesses) -> None:
    env = pipeline_env
    procs.start()
    procs.wait_ready()
    ids, thread = _ingest_synthetic(env, 700, rate=120.0, seed=21)
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    engine = make_engine(_sink_settings(env))
    try:
        wait_for(lambda: (probe.expect(ids[probe.stored + probe.pending:]) or probe.poll()) >= 150,
                 90, "the first tweets stored", _alive(procs))
        # SIGKILL: no commit, no goodbye to the group.
        assert procs.kill_worker(procs.workers[0]) == -9
        procs.add_worker()
        thread.join(60)
        assert len(ids) == 700
        _wait_stored(probe, ids, procs, timeout_s=150)
        _wait_drained(env)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 700
        _assert_trends_match_mentions(engine)
    finally:
        probe.close()
        engine.dispose()


@pytest.fixture
def own_servers(broker, tmp_path: Path) -> Iterator[tuple]:
    """PostgreSQL and Redis of this test alone (embedded), so they can be stopped and restarted."""
    from tweetner.stack import PostgresService, RedisService

    pg = PostgresService(tmp_path / "pg")
    redis_server = RedisService(tmp_path / "redis")
    pg.start()
    redis_server.start()
    yield pg, redis_server
    redis_server.stop()
    pg.stop()


def test_sink_survives_postgres_restart_and_redis_outage(
        pipeline_env: dict[str, str], own_servers: tuple, tmp_path: Path) -> None:
    from sink.schema import create_schema

    pg, redis_server = own_servers
    env = dict(pipeline_env, DATABASE_URL=pg.url, REDIS_URL=redis_server.url, DATABASE_SCHEMA="public")
    engine = make_engine(_sink_settings(env))
    create_schema(engine)
    procs = PipelineProcesses(env, tmp_path / "logs", workers=1)
    probe = StoredProbe(env["DATABASE_URL"], "public")
    try:
        procs.start()
        procs.wait_ready()
        ids, thread = _ingest_synthetic(env, 600, rate=100.0, seed=31)

        def stored() -> int:
            probe.expect(ids[probe.stored + probe.pending:])
            try:
                return probe.poll()
            except Exception:  # noqa: BLE001 - PostgreSQL is down on purpose
                return probe.stored

        wait_for(lambda: stored() >= 100, 90, "the first tweets stored", _alive(procs))
        pg.stop()
        time.sleep(4)  # the sink keeps consuming, fails to write, backs off, commits nothing
        pg.start()
        wait_for(lambda: stored() >= 300, 90, "tweets stored after the PostgreSQL restart", _alive(procs))
        redis_server.stop()
        time.sleep(3)  # PostgreSQL writes go on without Redis
        redis_server.start()
        thread.join(60)
        assert len(ids) == 600
        _wait_stored(probe, ids, procs, timeout_s=150)
        _wait_drained(env)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 600
        _assert_trends_match_mentions(engine)
        # The live sets were resynced from PostgreSQL after Redis came back (on the next write),
        # so one more small batch makes sure a write happened after the restart.
        more, extra = _ingest_synthetic(env, 20, rate=1000.0, seed=32)
        extra.join(30)
        _wait_stored(probe, more, procs, timeout_s=60)
        _wait_drained(env)
        _assert_redis_matches_sql(env, engine)
    finally:
        procs.stop()
        probe.close()
        engine.dispose()


def test_two_workers_share_partitions_through_a_rebalance(
        pipeline_env: dict[str, str], procs: PipelineProcesses) -> None:
    env = pipeline_env
    procs.start()
    procs.wait_ready()
    ids, thread = _ingest_synthetic(env, 1200, rate=100.0, seed=41)
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    try:
        second = procs.add_worker()  # joins (after its start-up) mid-stream: a rebalance under load

        def both_assigned() -> bool:
            parts = [set((w.health() or {}).get("assigned_partitions", [])) for w in procs.workers]
            return all(parts) and not (parts[0] & parts[1])

        wait_for(both_assigned, 60, "partitions split between the two workers", _alive(procs))
        thread.join(60)
        _wait_stored(probe, ids, procs)
        _wait_drained(env)
        assert (second.metrics() or {}).get("tweets_total", 0) > 0
        with probe.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 1200
    finally:
        probe.close()
