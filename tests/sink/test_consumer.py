"""The sink service against a real Tansu broker, PostgreSQL and Redis."""
from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition
from sqlalchemy import text

from sink.consumer import SinkService
from sink.db import make_engine
from sink.store import TrendStore
from tests.sink.streams import ago, tagged
from tests.sink.tcp_proxy import TcpProxy

PARTITIONS = 3


@pytest.fixture
def topics(kafka_bootstrap, settings):
    token = secrets.token_hex(3)
    s = settings.with_(kafka_bootstrap=kafka_bootstrap, tagged_topic=f"tagged-{token}",
                       deadletter_topic=f"dead-{token}", sink_group=f"sink-{token}",
                       batch_size=50)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(s.tagged_topic, PARTITIONS, 1), NewTopic(s.deadletter_topic, 1, 1)])
    admin.close()
    return s


def _produce(settings, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for i, v in enumerate(values):
        producer.send(settings.tagged_topic, key=str(i % 7).encode(), value=v)
    producer.flush()
    producer.close()


def _end_offsets(settings) -> dict[int, int]:
    """Last offset + 1 per partition, found by reading the topic (Tansu's ListOffsets for
    "latest" is not reliable, so this does not ask for it)."""
    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, consumer_timeout_ms=2000,
                      auto_offset_reset="earliest")
    c.assign([TopicPartition(settings.tagged_topic, p) for p in range(PARTITIONS)])
    ends: dict[int, int] = {}
    for m in c:
        ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
    c.close()
    return ends


def _committed(settings) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    tps = [TopicPartition(settings.tagged_topic, p) for p in range(PARTITIONS)]
    got = admin.list_group_offsets({settings.sink_group: tps}).get(settings.sink_group, {})
    admin.close()
    return {tp.partition: om.offset for tp, om in got.items()
            if om is not None and om.offset >= 0}


def _dead_letters(settings) -> list[dict]:
    c = KafkaConsumer(settings.deadletter_topic, bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", consumer_timeout_ms=3000)
    out = [json.loads(m.value) for m in c]
    c.close()
    return out


def _records(now, n: int, version: str = "v1") -> list[bytes]:
    names = [("Obama", "person"), ("#DisneyWorld", "location"), ("NASA", "org")]
    return [tagged(f"k{i}", ago(now, i % 20), [names[i % 3]], version=version)
            .model_dump_json().encode() for i in range(n)]


def test_consumer_stores_dead_letters_and_commits(engine, topics, now, redis_client):
    good = _records(now, 120)
    values = good[:60] + [b"{not json", b'{"id": "x", "text": "no other fields"}'] + good[60:] + good[:10]
    _produce(topics, values)

    stats = SinkService(topics).run(idle_exit_s=2.0)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 120
        assert conn.execute(text("SELECT count(*) FROM mentions")).scalar() == 120
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 120
    assert stats.dead_letters == 2 and stats.tweets_inserted == 120
    dead = _dead_letters(topics)
    assert sorted(d["stage"] for d in dead) == ["sink", "sink"]
    assert all(d["reason"].startswith("invalid TaggedTweet") for d in dead)
    assert all(d["source"].startswith(f"{topics.tagged_topic}/") for d in dead)
    assert {d["payload"] for d in dead} == {values[60].decode(), values[61].decode()}
    assert _committed(topics) == {p: off for p, off in _end_offsets(topics).items() if off > 0}


def test_postgres_down_commits_nothing_then_recovers(engine, topics, now, redis_client):
    proxy = TcpProxy(("127.0.0.1", 5432))  # closed: connections are refused
    url = topics.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    s = topics.with_(database_url=url)
    _produce(s, _records(now, 80))
    service = SinkService(s)
    thread = service.start(idle_exit_s=2.0)
    try:
        deadline = time.monotonic() + 20
        while service.stats.write_failures < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.stats.write_failures >= 3
        assert _committed(s) == {}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 0
        proxy.open()
        thread.join(30)
        assert not thread.is_alive()
    finally:
        service.stop(join_timeout_s=10)
        proxy.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tweets")).scalar() == 80
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 80
    assert _committed(s) == {p: off for p, off in _end_offsets(s).items() if off > 0}



class _HoldingStore(TrendStore):
    """Holds each write of a ``held`` batch until another write starts (or 5 s pass), and
    records whether one did: the order of starts is then the opposite of the order of arrival."""

    def __init__(self, engine, held: str) -> None:
        super().__init__(engine)
        self.held = held
        self.other_started = threading.Event()
        self.overlapped: list[bool] = []

    def write(self, records):
        if any(r.model_version == self.held for r in records):
            self.overlapped.append(self.other_started.wait(5.0))
        else:
            self.other_started.set()
        return super().write(records)


def _send(producer, topic: str, partition: int, recs) -> None:
    for rec in recs:
        producer.send(topic, partition=partition, value=rec.model_dump_json().encode())


def test_writers_never_store_two_records_of_one_tweet_at_once(engine, topics, now):
    # A retag of 30 tweets right behind their first tagging: held back, the first batch would
    # be stored after the retag by the second writer, and the stale version would win.
    s = topics.with_(writers=2, batch_size=30)
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    for version in ("v1", "v2"):
        _send(producer, s.tagged_topic, 0,
              [tagged(f"r{i}", ago(now, i % 4), [("Obama", "person")], version=version) for i in range(30)])
    producer.flush()
    producer.close()
    store = _HoldingStore(engine, held="v1")

    SinkService(s, store=store).run(idle_exit_s=2.0)

    assert store.overlapped and not any(store.overlapped)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT model_version, count(*) FROM tweets GROUP BY 1")).all()
        assert [tuple(v) for v in versions] == [("v2", 30)]
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 30
    assert _committed(s) == {p: off for p, off in _end_offsets(s).items() if off > 0}


@pytest.mark.parametrize("writers", [1, 2])
def test_writers_store_batches_without_a_common_tweet_side_by_side(engine, topics, now, writers):
    s = topics.with_(writers=writers, batch_size=30)
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    _send(producer, s.tagged_topic, 0,
          [tagged(f"a{i}", ago(now, 1), [("Obama", "person")], version="held") for i in range(30)])
    _send(producer, s.tagged_topic, 0, [tagged(f"b{i}", ago(now, 1), [("NASA", "org")]) for i in range(30)])
    producer.flush()
    producer.close()
    store = _HoldingStore(engine, held="held")

    stats = SinkService(s, store=store).run(idle_exit_s=2.0)

    # One writer stores the second batch only after the first; two store it meanwhile.
    assert any(store.overlapped) == (writers == 2)
    assert stats.tweets_inserted == 60
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(count) FROM trend_minute")).scalar() == 60
    # Offsets are committed oldest batch first, so all of them, whichever finished first.
    assert _committed(s) == {p: off for p, off in _end_offsets(s).items() if off > 0}
