"""The pipeline on real servers: ingest -> Tansu -> Faust tagger (tiny model) -> sink -> PG + Redis.

Acceptance of issue 3: every good tweet exactly once in PostgreSQL with its mentions, every bad
record in the dead-letter topic with a reason, trend buckets equal to mention counts, the Redis
leaderboard equal to SQL, replays changing nothing, a SIGKILLed worker losing nothing, and the
sink riding out a PostgreSQL restart and a Redis outage.
"""
from __future__ import annotations

import itertools
import json
import threading
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
from contracts.messages import DeadLetter, TaggedTweet
from tweetner.runner import PipelineProcesses, StoredProbe
from tweetner.stack import log_tail
from ingest.synthetic import SyntheticStream
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


class _Feed:
    """A synthetic stream produced in chunks the test releases when a condition holds.

    Nothing here paces the stream against a worker's start-up: a test sends a chunk, waits for
    what it needs (a rebalance, an outage seen by the sink), then sends the next one, so a slow
    machine only makes the test take longer.
    """

    def __init__(self, env: dict[str, str], seed: int, rate: float = 100.0) -> None:
        self._service = IngestService(IngestSettings.from_env(env))
        self._service.produced_ids = []
        self._tweets = SyntheticStream(seed=seed, tweets_per_second=rate).tweets()
        self._service.start()
        self._threads: list[threading.Thread] = []

    def send(self, n: int, rate: float | None = None) -> list[str]:
        """Produces ``n`` more tweets (paced at ``rate`` per second) and waits for the acks."""
        assert self._service.produced_ids is not None
        first = len(self._service.produced_ids)
        self._service.produce_tweets(itertools.islice(self._tweets, n), rate=rate)
        return self._service.produced_ids[first:]

    def send_in_background(self, n: int, rate: float) -> None:
        thread = threading.Thread(target=self.send, args=(n, rate), daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self, timeout_s: float = 120.0) -> None:
        for thread in self._threads:
            thread.join(timeout_s)
            assert not thread.is_alive(), "ingest did not finish producing"
        self._threads.clear()

    @property
    def ids(self) -> list[str]:
        assert self._service.produced_ids is not None
        return self._service.produced_ids

    def close(self) -> None:
        self.join()
        self._service.stop()


@pytest.fixture
def procs(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[PipelineProcesses]:
    processes = PipelineProcesses(pipeline_env, tmp_path / "logs", workers=1)
    yield processes
    processes.stop()


def _alive(procs: PipelineProcesses):
    def check() -> None:
        dead = procs.check_alive()
        if dead:
            logs = "".join(log_tail(procs.log_dir / f"{name}.log", 80) for name in dead)
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
    feed = _Feed(env, seed=21)
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    engine = make_engine(_sink_settings(env))
    try:
        first = feed.send(300)
        probe.expect(first)
        wait_for(lambda: probe.poll() >= 150, 120, "the first tweets stored", _alive(procs))
        # SIGKILL: no commit, no goodbye to the group. The rest of the stream is produced only
        # now, so the kill always lands mid-stream, however fast the worker was.
        assert procs.kill_worker(procs.workers[0]) == -9
        feed.send_in_background(400, rate=120.0)
        procs.add_worker()
        feed.join()
        assert len(feed.ids) == 700
        _wait_stored(probe, feed.ids, procs, timeout_s=180)
        _wait_drained(env)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 700
        _assert_trends_match_mentions(engine)
    finally:
        feed.close()
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


def _sink_log_count(procs: PipelineProcesses, needle: str) -> int:
    path = procs.log_dir / "sink.log"
    return path.read_text(errors="replace").count(needle) if path.exists() else 0


def test_sink_survives_postgres_restart_and_redis_outage(
        pipeline_env: dict[str, str], own_servers: tuple, tmp_path: Path) -> None:
    from sink.schema import create_schema

    pg, redis_server = own_servers
    env = dict(pipeline_env, DATABASE_URL=pg.url, REDIS_URL=redis_server.url, DATABASE_SCHEMA="public")
    engine = make_engine(_sink_settings(env))
    create_schema(engine)
    procs = PipelineProcesses(env, tmp_path / "logs", workers=1)
    probe = StoredProbe(env["DATABASE_URL"], "public")
    feed: _Feed | None = None

    def stored() -> int:
        probe.expect(feed.ids if feed else [])
        try:
            return probe.poll()
        except Exception:  # noqa: BLE001 - PostgreSQL is down on purpose
            return probe.stored

    try:
        procs.start()
        procs.wait_ready()
        feed = _Feed(env, seed=31)
        feed.send(200, rate=100.0)
        wait_for(lambda: stored() >= 200, 120, "the first tweets stored", _alive(procs))

        pg.stop()
        failures = _sink_log_count(procs, "PostgreSQL write failed")
        feed.send(200, rate=100.0)
        # The sink keeps consuming, fails to write, backs off and commits nothing.
        wait_for(lambda: _sink_log_count(procs, "PostgreSQL write failed") >= failures + 2, 120,
                 "the sink to fail writes while PostgreSQL is down", _alive(procs))
        pg.start()
        wait_for(lambda: stored() >= 400, 120, "tweets stored after the PostgreSQL restart", _alive(procs))

        redis_server.stop()
        feed.send(200, rate=100.0)
        # PostgreSQL writes go on without Redis.
        wait_for(lambda: stored() >= 600, 120, "tweets stored while Redis is down", _alive(procs))
        redis_server.start()
        assert len(feed.ids) == 600
        _wait_stored(probe, feed.ids, procs, timeout_s=150)
        _wait_drained(env)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 600
        _assert_trends_match_mentions(engine)
        # The live sets are resynced from PostgreSQL on the first write after Redis came back,
        # so one more small batch makes sure a write happened after the restart.
        more = feed.send(20)
        _wait_stored(probe, more, procs, timeout_s=60)
        _wait_drained(env)
        _assert_redis_matches_sql(env, engine)
    finally:
        if feed is not None:
            feed.close()
        procs.stop()
        probe.close()
        engine.dispose()


def test_two_workers_share_partitions_through_a_rebalance(
        pipeline_env: dict[str, str], procs: PipelineProcesses) -> None:
    env = pipeline_env
    procs.start()
    procs.wait_ready()
    feed = _Feed(env, seed=41)
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    try:
        # The first half streams while the second worker starts and joins: a rebalance under load.
        feed.send_in_background(600, rate=100.0)
        second = procs.add_worker()

        def both_assigned() -> bool:
            parts = [set((w.health() or {}).get("assigned_partitions", [])) for w in procs.workers]
            return all(parts) and not (parts[0] & parts[1])

        wait_for(both_assigned, 180, "partitions split between the two workers", _alive(procs))
        # The second half is produced only once both workers own partitions, so the second
        # worker has tweets to tag however long its start-up took.
        feed.join()
        feed.send(600, rate=100.0)
        assert len(feed.ids) == 1200
        _wait_stored(probe, feed.ids, procs)
        _wait_drained(env)
        assert (second.metrics() or {}).get("tweets_total", 0) > 0
        with probe.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 1200
    finally:
        feed.close()
        probe.close()
