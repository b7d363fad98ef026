"""Topic names shared by every stage and the one call that makes sure they exist.

The names are read from the environment once, by contracts.settings.StageSettings (``TWEETS_TOPIC``,
``TAGGED_TOPIC``, ``DEADLETTER_TOPIC``, ``TOPIC_PARTITIONS``), so one environment configures the
whole pipeline.
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from typing import Mapping

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


@dataclass(frozen=True)
class Topics:
    tweets: str = "tweets"
    tagged: str = "tweets.tagged"
    deadletter: str = "tweets.deadletter"
    # Partitions bound how many tagger workers (and sinks) can share the load.
    partitions: int = 8

    def all(self) -> dict[str, int]:
        # Dead letters are rare and read by people; one partition keeps them in order.
        return {self.tweets: self.partitions, self.tagged: self.partitions, self.deadletter: 1}


def key_partition(key: bytes, partitions: int) -> int:
    """The partition (of ``partitions``, numbered from 0 as Kafka does) a keyed record goes to:
    one tweet id always lands in one partition.

    CRC-32 in C instead of kafka-python's default murmur2, which is pure Python and was a quarter
    of ingest's CPU per tweet. Ingest, the one producer of the tweets topic, partitions with it
    and the tagger keeps a record's partition, so both topics agree; a foreign producer hashing
    with murmur2 would still be correct (the sink orders versions of a tweet by
    ``ingested_at``), only not co-partitioned.
    """
    return zlib.crc32(key) % partitions


def ensure_topics(bootstrap: str, topics: Mapping[str, int], *, timeout_s: float = 30.0) -> None:
    """Create the missing topics; existing ones are left alone (their partition count included).

    Retries until ``timeout_s`` because a broker that was just started may not answer yet.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000,
                                     bootstrap_timeout_ms=remaining_ms)
            try:
                existing = set(admin.list_topics())
                missing = [NewTopic(name, num_partitions=n, replication_factor=1)
                           for name, n in topics.items() if name not in existing]
                if missing:
                    admin.create_topics(missing, raise_errors=False)
                    log.info("created topics %s", ", ".join(t.name for t in missing))
                return
            finally:
                admin.close()
        except KafkaError as exc:
            if time.monotonic() >= deadline:
                raise
            log.debug("broker %s not ready (%s), retrying", bootstrap, exc)
            time.sleep(0.5)
