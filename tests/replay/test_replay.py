"""`tweetner replay` end to end on a real broker (Tansu), PostgreSQL and Redis."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from tests.pipeline.helpers import read_topic
from tests.replay.helpers import (
    bucket_mismatches,
    dump_all,
    produce,
    redis_minutes,
    replay,
    sql_minutes,
    tagged,
    tweets,
)
from contracts.messages import DeadLetter


def _versions(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT model_version, count(*) FROM tweets GROUP BY 1")).all())


def test_resink_stores_everything_and_a_second_replay_changes_nothing(replay_env, capsys):
    env = replay_env
    produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(40)])

    first = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", "all")
    assert (first["records_read"], first["tweets_inserted"], first["mentions_inserted"]) == (40, 40, 40)
    assert first["trend_buckets_changed"] > 0 and first["dead_letters"] == 0
    assert bucket_mismatches(env.engine) == []
    assert redis_minutes(env.redis, env.redis_prefix) == sql_minutes(env.engine)
    before = dump_all(env.engine)

    second = replay(capsys, "--topic", env.tagged_topic, "--from", "1d")
    assert second["records_read"] == 40 and second["tweets_unchanged"] == 40
    assert (second["tweets_inserted"], second["tweets_replaced"], second["mentions_inserted"],
            second["trend_buckets_changed"]) == (0, 0, 0, 0)
    assert dump_all(env.engine) == before
    assert redis_minutes(env.redis, env.redis_prefix) == sql_minutes(env.engine)


def test_retag_with_the_same_model_version_is_a_no_op(replay_env, models, capsys):
    env = replay_env
    produce(env.bootstrap, env.raw_topic, tweets(30))
    args = ("--topic", env.raw_topic, "--from-offsets", "all", "--retag", "--model",
            str(models["old"]), "--device", "cpu", "--precision", "fp32", "--batch-size", "16")

    first = replay(capsys, *args)
    assert first["model_version"] == "tiny-0" and first["tweets_inserted"] == 30
    assert first["mentions_inserted"] > 0, "the tiny model should find some entities"
    before = dump_all(env.engine)

    again = replay(capsys, *args)
    assert (again["tweets_unchanged"], again["tweets_inserted"], again["tweets_replaced"],
            again["mentions_inserted"], again["trend_buckets_changed"]) == (30, 0, 0, 0, 0)
    assert dump_all(env.engine) == before


def test_retag_with_a_new_model_replaces_mentions_and_fixes_counts(replay_env, models, capsys):
    env = replay_env
    produce(env.bootstrap, env.raw_topic, tweets(30))
    base = ("--topic", env.raw_topic, "--from-offsets", "all", "--retag", "--device", "cpu",
            "--precision", "fp32")
    replay(capsys, *base, "--model", str(models["old"]))
    old = dump_all(env.engine)["mentions"]

    new = replay(capsys, *base, "--model", str(models["new"]))
    assert new["model_version"] == "tiny-1"
    assert new["tweets_replaced"] == 30 and new["tweets_inserted"] == 0
    assert new["trend_buckets_changed"] > 0
    assert _versions(env.engine) == {"tiny-1": 30}
    with env.engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM mentions WHERE model_version = 'tiny-0'")).scalar()
        current = conn.execute(text("SELECT count(*) FROM current_mentions")).scalar()
    assert kept == len(old), "older versions' mentions stay in mentions"
    assert current == new["mentions_inserted"]
    assert bucket_mismatches(env.engine) == []
    assert redis_minutes(env.redis, env.redis_prefix) == sql_minutes(env.engine)


def test_from_and_to_select_records_by_timestamp(replay_env, capsys):
    env = replay_env
    now = datetime.now(timezone.utc)
    groups = {"old": now - timedelta(hours=3), "mid": now - timedelta(minutes=90),
              "new": now - timedelta(minutes=10)}
    records, stamps = [], []
    for name, at in groups.items():
        for i, t in enumerate(tweets(12, prefix=f"{name}-")):
            records.append(tagged(t))
            stamps.append(int((at + timedelta(seconds=i)).timestamp() * 1000))
    # In time order, spread so that every partition holds every group.
    produce(env.bootstrap, env.tagged_topic, records, stamps, partitions=3)

    to = (now - timedelta(hours=1)).isoformat()
    summary = replay(capsys, "--topic", env.tagged_topic, "--from", "2h", "--to", to)
    with env.engine.connect() as conn:
        ids = {r for (r,) in conn.execute(text("SELECT id FROM tweets"))}
    assert ids == {f"mid-{i}" for i in range(12)}
    assert summary["tweets_inserted"] == 12 and summary["records_skipped"] > 0
    assert {p["stopped_by"] for p in summary["partitions"].values()} <= {"to", "end"}
    assert summary["time_lookup"] in ("broker", "scan", "mixed")


def test_bad_records_become_dead_letters(replay_env, capsys):
    env = replay_env
    good = [tagged(t) for t in tweets(5)]
    produce(env.bootstrap, env.tagged_topic,
            [good[0], b"{not json", good[1], b'{"id": "only an id"}', *good[2:]])

    summary = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", "all")
    assert summary["dead_letters"] == 2 and summary["tweets_inserted"] == 5
    dead = [DeadLetter.model_validate_json(r.value) for r in read_topic(env.bootstrap, env.deadletter_topic)]
    assert len(dead) == 2 and {d.stage for d in dead} == {"replay"}
    assert {d.payload for d in dead} == {"{not json", '{"id": "only an id"}'}
    for d in dead:
        assert d.source.startswith(f"{env.tagged_topic}/") and d.source.endswith(f"@{d.position}")
        assert "invalid TaggedTweet" in d.reason


def test_resume_continues_from_committed_progress(replay_env, capsys):
    env = replay_env
    produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(20, prefix="a")])
    first = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", "all")
    assert first["records_read"] == 20
    produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(7, prefix="b")])

    dry = replay(capsys, "--topic", env.tagged_topic, "--resume", "--dry-run")
    assert (dry["records_read"], dry["records_valid"], dry["tweets_inserted"]) == (7, 7, 0)
    resumed = replay(capsys, "--topic", env.tagged_topic, "--resume")
    assert resumed["records_read"] == 7 and resumed["tweets_inserted"] == 7


def test_from_offsets_reads_only_the_named_partitions_from_there(replay_env, capsys):
    env = replay_env
    produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(30)])
    full = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", "all", "--dry-run")
    ends = {int(p): v["end"] for p, v in full["partitions"].items()}
    assert sum(ends.values()) == 30
    part = max(ends, key=ends.get)
    summary = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", f"{part}:2", "--dry-run")
    assert list(summary["partitions"]) == [str(part)]
    assert summary["records_read"] == ends[part] - 2


def _time_range_topic(env, now):
    """12 tweets per hour for the last 4 hours on 3 partitions, in time order; ids say the hour."""
    records, stamps = [], []
    for hour in (4, 3, 2, 1):
        for i, t in enumerate(tweets(12, prefix=f"h{hour}-")):
            records.append(tagged(t))
            stamps.append(int((now - timedelta(hours=hour) + timedelta(seconds=i)).timestamp() * 1000))
    produce(env.bootstrap, env.tagged_topic, records, stamps, partitions=3)


def _stored_hours(engine) -> dict[str, int]:
    with engine.connect() as conn:
        ids = [r for (r,) in conn.execute(text("SELECT id FROM tweets"))]
    return {h: sum(1 for i in ids if i.startswith(h + "-")) for h in ("h4", "h3", "h2", "h1")}


def test_a_time_lookup_that_overshoots_falls_back_to_a_scan(replay_env, capsys, monkeypatch):
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndTimestamp

    env = replay_env
    _time_range_topic(env, datetime.now(timezone.utc))
    # A broker answering far too late an offset (the last one) for every partition.
    monkeypatch.setattr(KafkaConsumer, "offsets_for_times", lambda self, q: {
        tp: OffsetAndTimestamp(15, 0, -1) for tp in q})
    summary = replay(capsys, "--topic", env.tagged_topic, "--from", "150m")
    assert summary["time_lookup"] == "scan"
    assert _stored_hours(env.engine) == {"h4": 0, "h3": 0, "h2": 12, "h1": 12}


def test_a_right_time_lookup_is_used(replay_env, capsys, monkeypatch):
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndTimestamp

    env = replay_env
    _time_range_topic(env, datetime.now(timezone.utc))
    # What Kafka would answer for 150m ago: per partition 4 records per hour, so h2 starts at 8.
    monkeypatch.setattr(KafkaConsumer, "offsets_for_times", lambda self, q: {
        tp: OffsetAndTimestamp(8, 0, -1) for tp in q})
    summary = replay(capsys, "--topic", env.tagged_topic, "--from", "150m")
    assert summary["time_lookup"] == "broker"
    # Only the one record before each start offset is read to check the broker's answer.
    assert summary["records_read"] == 3 * 9 and summary["records_skipped"] == 3
    assert _stored_hours(env.engine) == {"h4": 0, "h3": 0, "h2": 12, "h1": 12}


def test_a_live_topic_replay_stops_at_the_end_captured_at_start(replay_env, capsys):
    import threading

    env = replay_env
    produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(60, prefix="before")])
    stop = threading.Event()

    def keep_producing() -> None:
        n = 0
        while not stop.is_set():
            produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(5, prefix=f"live{n}-")])
            n += 1

    writer = threading.Thread(target=keep_producing, daemon=True)
    writer.start()
    try:
        summary = replay(capsys, "--topic", env.tagged_topic, "--from-offsets", "all",
                         "--batch-size", "10")
    finally:
        stop.set()
        writer.join(10)
    assert summary["records_read"] >= 60 and not summary["interrupted"]
    assert {p["stopped_by"] for p in summary["partitions"].values()} == {"end"}
    assert summary["records_read"] == sum(p["end"] - p["start"] for p in summary["partitions"].values())


def test_a_stopped_replay_resumes_where_it_stopped(replay_env):
    from sink.store import TrendStore
    from tweetner.replay import ReplayOptions, ReplayService

    env = replay_env
    produce(env.bootstrap, env.tagged_topic, [tagged(t) for t in tweets(50)])
    options = ReplayOptions(topic=env.tagged_topic, from_offsets="all", batch_size=8,
                            progress=False, idle_timeout_s=5)

    class StopAfterTwoBatches(TrendStore):
        writes = 0

        def write(self, records):
            result = super().write(records)
            StopAfterTwoBatches.writes += 1
            if StopAfterTwoBatches.writes == 2:
                service.stop()
            return result

    from sink.db import make_engine

    service = ReplayService(options, env.settings, store=StopAfterTwoBatches(make_engine(env.settings)))
    first = service.run()
    assert first.interrupted and 0 < first.tweets_inserted < 50
    rest = ReplayService(ReplayOptions(topic=env.tagged_topic, resume=True, progress=False,
                                       idle_timeout_s=5), env.settings).run()
    assert not rest.interrupted
    assert rest.records_read == 50 - first.records_read
    assert first.tweets_inserted + rest.tweets_inserted == 50 and rest.tweets_unchanged == 0
