"""Reading topics and waiting for conditions in pipeline tests.

Tansu's ListOffsets answers "latest" with the base offset of the last record batch plus one,
not the high watermark, so nothing here trusts ``end_offsets``: topics are read until they
stay quiet, and the end of a partition is the last offset actually read plus one.
"""
from __future__ import annotations

import time
from typing import Callable

from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0, quiet_s: float = 1.0) -> list:
    """Every record in ``topic`` (all partitions, from the beginning), no group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
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
        out = []
        last_data = time.monotonic()
        while time.monotonic() - last_data < quiet_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} did not stop growing within {timeout_s:.0f}s")
            polled = consumer.poll(timeout_ms=200)
            for records in polled.values():
                out.extend(records)
            if polled:
                last_data = time.monotonic()
        return out
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Last offset + 1 per partition, from the records themselves."""
    ends: dict[int, int] = {}
    for record in read_topic(bootstrap, topic, quiet_s=0.5):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` past the group's committed offsets."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        committed = {tp.partition: meta.offset
                     for tp, meta in admin.list_group_offsets(group).get(group, {}).items()
                     if tp.topic == topic}
    finally:
        admin.close()
    return sum(max(0, end - committed.get(p, 0)) for p, end in end_offsets(bootstrap, topic).items())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str,
             check: Callable[[], None] | None = None, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
