"""The agent's batch logic without Kafka: parsing, isolation of failures, offsets and metrics."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from tagger.worker.agent import AgentMetrics, BatchTagger, InputRecord, load_model
from tagger.worker.settings import AgentSettings
from contracts.messages import TaggedTweet, Tweet
from tests.pipeline.fake_model import FakeTagger


def _rec(value: bytes | None, offset: int) -> InputRecord:
    return InputRecord(value, "tweets", 2, offset)


def _tweet(i: int, text: str) -> bytes:
    return Tweet(id=f"t{i}", text=text, created_at=datetime(2024, 1, 1, tzinfo=timezone.utc)).model_dump_json().encode()


def test_batch_isolates_bad_values_and_poisoned_tweets() -> None:
    records = [
        _rec(_tweet(0, "Obama in London"), 10),
        _rec(b"{not json", 11),
        _rec(None, 12),
        _rec(b'{"id": "x"}', 13),
        _rec(_tweet(4, "BOOM says Apple"), 14),
        _rec(_tweet(5, "nothing here"), 15),
    ]
    with ThreadPoolExecutor(1) as pool:
        outcome = asyncio.run(BatchTagger(FakeTagger(), pool).tag(records))
    assert [t.id for _, t in outcome.tagged] == ["t0", "t5"]
    first = outcome.tagged[0][1]
    assert [(e.text, e.start, e.end) for e in first.entities] == [("Obama", 0, 5), ("London", 9, 15)]
    assert all(first.text[e.start:e.end] == e.text for e in first.entities)
    assert first.model_version == "fake-1" and first.model_name == "fake-capitals"
    dead = {rec.offset: letter for rec, letter in outcome.dead}
    assert set(dead) == {11, 12, 13, 14}
    assert dead[11].reason.startswith("invalid Tweet") and dead[11].source == "tweets/2@11"
    assert dead[14].reason.startswith("model error") and dead[14].position == 14
    assert all(letter.stage == "tagger" for letter in dead.values())


def test_model_factory_and_metrics() -> None:
    settings = AgentSettings.from_env({"TAGGER_MODEL_FACTORY": "tests.pipeline.fake_model:load"})
    assert load_model(settings).model_version == "fake-1"
    metrics = AgentMetrics()
    metrics.record_batch(32, 30, 2, 0.5, 0.4)
    metrics.record_batch(16, 16, 0, 0.25, 0.2)
    snap = metrics.snapshot({"tweets/0": 5, "tweets/1": 0})
    assert snap["tweets_total"] == 48 and snap["dead_letters_total"] == 2
    assert snap["batch_size_avg"] == 24 and snap["consumer_lag_total"] == 5
    assert snap["tweets_per_second"] > 0


def test_wire_values_are_the_tagged_tweets_the_sink_reads() -> None:
    """The worker sends TaggedBatch.wire(), encoded without pydantic: parsed as the sink parses
    it, each value must be exactly the TaggedTweet replay would write, key included."""
    records = [_rec(_tweet(0, "Obama in London"), 10), _rec(_tweet(1, "nothing here"), 11),
               _rec(_tweet(2, "Émilie met 😀 Zoe in Paris"), 12)]
    with ThreadPoolExecutor(1) as pool:
        outcome = asyncio.run(BatchTagger(FakeTagger(), pool).tag(records))
    wire = outcome.wire()
    assert outcome.n_tagged == 3 and [rec.offset for rec, _, _ in wire] == [10, 11, 12]
    for (rec, key, value), (same_rec, tweet) in zip(wire, outcome.tagged):
        assert rec is same_rec and key == tweet.id.encode()
        parsed = TaggedTweet.model_validate_json(value)
        assert parsed == tweet
        assert parsed.tagged_at.utcoffset().total_seconds() == 0
    last = TaggedTweet.model_validate_json(wire[2][2])
    assert [last.text[e.start:e.end] for e in last.entities] == ["Zoe", "Paris"]
