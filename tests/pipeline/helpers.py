"""Reading topics and waiting for conditions in pipeline tests."""
from __future__ import annotations

import time
from typing import Callable

from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap: str, topic: str, timeout_s: float = 15.0) -> list:
    """Every record currently in ``topic`` (all partitions, beginning to end offsets), no group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=1000)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                if time.monotonic() > deadline:
                    return []
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """End offsets minus the group's committed offsets over ``topic``."""
    from kafka import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = consumer.end_offsets(tps)
        committed = admin.list_group_offsets(group).get(group, {})
        return sum(end[tp] - (committed[tp].offset if tp in committed else 0) for tp in tps)
    finally:
        consumer.close()
        admin.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             check: Callable[[], None] | None = None, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
