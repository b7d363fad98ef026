"""`tweetner replay` end to end on a real broker (Tansu), PostgreSQL and Redis."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from tests.pipeline.helpers import read_topic
from tests.replay.helpers import (bucket_mismatches, dump_all, produce, redis_minutes, replay,
                                  sql_minutes, tagged, tweets)
from tweetner.messages import DeadLetter


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
