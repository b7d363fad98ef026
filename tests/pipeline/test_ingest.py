"""Ingest: validation, dead letters with reasons and positions, ids, summary, fatal errors."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from contracts.topics import key_partition
from ingest.records import Rejection, derived_id, parse_record
from ingest.service import RatePacer
from ingest.sources import RawRecord, read_source
from contracts.messages import DeadLetter, Tweet
from tests.pipeline.helpers import read_topic, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _parse(data: bytes, fmt: str = "jsonl", max_bytes: int = 1000, line: int = 1):
    return parse_record(RawRecord("in.jsonl", line, data, fmt), max_bytes=max_bytes,  # type: ignore[arg-type]
                        unescape_html=True)


@pytest.mark.parametrize("data, reason", [
    (b'{"id": "1", "text": "hi"', "invalid JSON"),
    (b"[1, 2]", "invalid JSON record"),
    (b'{"id": "1"}', "missing text"),
    (b'{"id": "1", "text": "   "}', "empty text"),
    (b'{"id": "1", "text": 5}', "invalid text"),
    (b'{"id": "1", "text": "caf\xe9"}', "not UTF-8"),
    (b'{"id": "1", "text": "' + b"x" * 2000 + b'"}', "oversized record"),
    (b'{"id": "1", "text": "ok", "created_at": "yesterday"}', "invalid created_at"),
    (b'{"id": [1], "text": "ok"}', "invalid id"),
])
def test_bad_records_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    result = _parse(data)
    assert isinstance(result, Rejection)
    assert result.reason.startswith(reason), result.reason


def test_good_records_and_deterministic_ids() -> None:
    tweet = _parse(b'{"id": 123, "text": "AT&amp;T in &lt;NYC&gt;", "created_at": "2017-05-01T10:00:00", '
                   b'"user": {"screen_name": "bob"}, "lang": "en"}')
    assert isinstance(tweet, Tweet)
    assert tweet.id == "123" and tweet.text == "AT&T in <NYC>" and tweet.user == "bob"
    assert tweet.created_at.tzinfo is not None  # naive -> UTC
    twitter_time = _parse(b'{"text": "x", "created_at": "Wed Oct 10 20:19:24 +0000 2018"}')
    assert isinstance(twitter_time, Tweet) and twitter_time.created_at.year == 2018
    # Same content -> same id, whatever the file or line.
    a = _parse(b'{"text": "same", "created_at": "2017-05-01T10:00:00Z"}', line=1)
    b = _parse(b'{"text": "same", "created_at": "2017-05-01T10:00:00Z"}', line=9)
    assert isinstance(a, Tweet) and isinstance(b, Tweet) and a.id == b.id and a.id.startswith("h")
    # Plain text: file name + line + text, so identical lines on different lines stay distinct.
    t1 = _parse(b"RT hello", fmt="text", line=1)
    t2 = _parse(b"RT hello", fmt="text", line=2)
    assert isinstance(t1, Tweet) and isinstance(t2, Tweet) and t1.id != t2.id
    assert t1.id == derived_id("in.jsonl", "1", "RT hello")
    assert isinstance(_parse(b"   ", fmt="text"), Rejection)


def test_format_guess_and_follow(tmp_path: Path) -> None:
    path = tmp_path / "grow.log"
    path.write_bytes(b'{"text": "one"}\n')
    stop = threading.Event()
    seen: list[RawRecord] = []

    def reader() -> None:
        seen.extend(read_source(str(path), follow=True, poll_s=0.05, stop=stop))

    thread = threading.Thread(target=reader)
    thread.start()
    wait_for(lambda: len(seen) == 1, 30, "the first line read")
    with open(path, "ab") as f:
        f.write(b'{"text": "tw')  # a partial line is not a record yet
        f.flush()
        time.sleep(0.3)  # several polls see the partial line; none may yield it
        assert len(seen) == 1
        f.write(b'o"}\n')
    wait_for(lambda: len(seen) == 2, 30, "the completed line read")
    stop.set()
    thread.join(5)
    assert [r.data for r in seen] == [b'{"text": "one"}', b'{"text": "two"}']
    assert all(r.fmt == "jsonl" for r in seen)


def test_a_tweet_id_always_picks_one_partition_and_ids_spread_over_all() -> None:
    ids = [f"syn0-{i:09d}".encode() for i in range(8000)]
    counts = Counter(key_partition(key, 8) for key in ids)
    assert sorted(counts) == list(range(8)) and min(counts.values()) > 800
    assert [key_partition(key, 8) for key in ids[:50]] == [key_partition(key, 8) for key in ids[:50]]
    assert {key_partition(key, 2) for key in ids} == {0, 1}


def test_rate_pacer_spaces_sends() -> None:
    pacer = RatePacer(100.0)
    started = time.monotonic()
    for _ in range(20):
        pacer.wait(None)
    assert time.monotonic() - started >= 0.15


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_ingest_cli_produces_and_dead_letters(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    lines = [
        b'{"id": "a1", "text": "Obama visits London", "created_at": "2017-05-01T10:00:00Z"}',
        b'not json at all',
        b'{"id": "a2", "text": ""}',
        b'{"id": "a3"}',
        b'{"id": "a4", "text": "caf\xe9 au lait"}',
        b'{"id": "a5", "text": "' + b"y" * 20_000 + b'"}',
        b'{"id": "a6", "text": "Apple &amp; Google"}',
    ]
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    text = tmp_path / "raw.txt"
    text.write_bytes(b"first tweet\nsecond &amp; last\n")
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "ingest", str(jsonl), str(text),
                           "--no-progress"], env=_cli_env(pipeline_env), capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "read 9, produced 4, rejected 5" in proc.stdout.decode()

    bootstrap = pipeline_env["KAFKA_BOOTSTRAP"]
    tweets = [Tweet.model_validate_json(r.value) for r in read_topic(bootstrap, pipeline_env["TWEETS_TOPIC"])]
    by_id = {t.id: t for t in tweets}
    assert {"a1", "a6"} <= set(by_id) and len(by_id) == 4
    assert by_id["a6"].text == "Apple & Google"
    assert any(t.text == "second & last" for t in tweets)
    records = read_topic(bootstrap, pipeline_env["TWEETS_TOPIC"])
    assert all(r.key.decode() == Tweet.model_validate_json(r.value).id for r in records)
    partitions = int(pipeline_env["TOPIC_PARTITIONS"])
    assert all(r.partition == key_partition(r.key, partitions) for r in records)

    letters = [DeadLetter.model_validate_json(r.value)
               for r in read_topic(bootstrap, pipeline_env["DEADLETTER_TOPIC"])]
    got = {(d.source, d.position): d.reason.split(":")[0] for d in letters}
    assert got == {
        (str(jsonl), 2): "invalid JSON",
        (str(jsonl), 3): "empty text",
        (str(jsonl), 4): "missing text",
        (str(jsonl), 5): "not UTF-8",
        (str(jsonl), 6): "oversized record",
    }
    assert all(d.stage == "ingest" for d in letters)
    assert next(d for d in letters if d.position == 2).payload == "not json at all"


def test_ingest_cli_fails_clearly_without_broker(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("hello\n")
    env = _cli_env({"KAFKA_BOOTSTRAP": "127.0.0.1:1", "INGEST_CONNECT_TIMEOUT_S": "2"})
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "ingest", str(path),
                           "--no-progress"], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert "unreachable" in proc.stderr.decode()


def test_synthetic_stream_is_deterministic_and_bursty() -> None:
    from datetime import datetime, timezone

    from ingest.synthetic import SyntheticStream

    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    a = list(SyntheticStream(seed=3, start=start).tweets(3000))
    b = list(SyntheticStream(seed=3, start=start).tweets(3000))
    assert [(t.id, t.text, t.created_at) for t in a] == [(t.id, t.text, t.created_at) for t in b]
    stream = SyntheticStream(seed=3, start=start)
    slot, name = stream.burst_entity(0)  # type: ignore[misc]
    in_burst = sum(name in t.text for t in a[:stream.burst_length])
    after = sum(name in t.text for t in a[stream.burst_length:stream.burst_length * 2])
    assert in_burst > 3 * max(after, 1)
