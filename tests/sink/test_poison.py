"""Poison records at the sink's write path: each is a dead letter with a reason, the clean
records of the same batch are stored, and nothing is taken for an outage."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from contracts.decoding import decode_records
from contracts.messages import TaggedTweet
from sink.delivery import is_record_error, write_with_fallback
from sink.consumer import SinkService
from sink.store import TrendStore
from tests.sink.streams import ago, tagged
from tests.sink.test_consumer import _committed, _dead_letters, _end_offsets, _produce, topics

__all__ = ["topics"]  # the fixture, shared with test_consumer


@dataclass(frozen=True)
class Rec:
    value: bytes
    offset: int
    topic: str = "tweets.tagged"
    partition: int = 0


def _wire(t: TaggedTweet) -> bytes:
    return t.model_dump_json().encode()


POISON = [
    b'{"id":"n1","text":"a\\u0000b","created_at":"2020-01-01T00:00:00Z","entities":[],'
    b'"model_name":"m","model_version":"v1"}',
    b'{"id":"n2","text":"Paris","created_at":"0001-01-01T00:00:00+05:00","entities":'
    b'[{"start":0,"end":5,"text":"Paris","label":"location","score":0.9}],'
    b'"model_name":"m","model_version":"v1"}',
    b'{"id":"' + b"9" * 9000 + b'","text":"x","created_at":"2020-01-01T00:00:00Z",'
    b'"entities":[],"model_name":"m","model_version":"v1"}',
    b'{"id":"n4","text":"\\ud800","created_at":"2020-01-01T00:00:00Z","entities":[],'
    b'"model_name":"m","model_version":"v1"}',
    b'{"id":"n5","text":"bell\\u0007","created_at":"2020-01-01T00:00:00Z","entities":[],'
    b'"model_name":"m","model_version":"v1"}',
    b'{"id":"n6","text":"late","created_at":"9999-12-31T23:59:59-05:00","entities":[],'
    b'"model_name":"m","model_version":"v1"}',
]


def test_every_poison_value_is_a_dead_letter_and_clean_ones_decode(now):
    clean = [_wire(tagged(f"c{i}", ago(now, 1), [("Paris", "location")])) for i in range(3)]
    records = [Rec(v, i) for i, v in enumerate(POISON + clean)]
    good, dead = decode_records(records, TaggedTweet, "sink")
    assert [r.offset for r, _ in dead] == list(range(len(POISON)))
    assert all(letter.reason.startswith("invalid TaggedTweet") for _, letter in dead)
    assert [t.id for _, t in good] == ["c0", "c1", "c2"]


def test_values_postgres_refuses_are_dead_letters_not_outages(engine, now):
    """Defense in depth: old topics hold records written before validation existed."""
    store = TrendStore(engine)
    ok = tagged("ok", ago(now, 1), [("Paris", "location")])
    nul = tagged("nul", ago(now, 1)).model_copy(update={"text": "a\x00b"})
    # Incompressible, so PostgreSQL cannot squeeze the index row under its 8 KiB limit.
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(300))
    long_id = tagged("long", ago(now, 1)).model_copy(update={"id": noise[:9000]})
    records = [(Rec(b"", i), t) for i, t in enumerate([nul, ok, long_id])]
    result, rejected = write_with_fallback(store, records, "sink")
    assert result.tweets_inserted == 1
    assert [d.position for d in rejected] == [0, 2]
    assert all(d.reason.startswith("rejected by PostgreSQL") for d in rejected)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM tweets")).scalars().all() == ["ok"]


def test_connection_errors_are_outages():
    lost = OperationalError("SELECT 1", {}, Exception("could not connect to server"))
    assert not is_record_error(lost)
    assert is_record_error(ValueError("A string literal cannot contain NUL (0x00) characters."))


def test_a_stream_opening_with_poison_stores_every_clean_tweet(engine, topics, now, redis_client):
    clean = [tagged(f"c{i}", ago(now, i % 5), [("Paris", "location")]) for i in range(40)]
    _produce(topics, POISON + [_wire(t) for t in clean])

    stats = SinkService(topics).run(idle_exit_s=2.0)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 40
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 40
    assert stats.dead_letters == len(POISON)
    dead = _dead_letters(topics)
    assert len(dead) == len(POISON) and all(d["reason"] for d in dead)
    assert _committed(topics) == {p: off for p, off in _end_offsets(topics).items() if off > 0}
