"""Which partition of the tweets topic a tweet goes to, for kafka-python's producer."""
from __future__ import annotations

import random
from typing import Any

from kafka.partitioner import Partitioner

from contracts.topics import key_partition


class KeyPartitioner(Partitioner):
    """Keyed records by :func:`contracts.topics.key_partition` over the producer's current
    metadata (a topic re-created with fewer partitions is followed, as the default partitioner
    follows it); unkeyed ones (none of ours are) to a random available partition."""

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if partitions is None:
            raise ValueError(f"topic {topic} not found in the producer's metadata")
        if serialized_key is not None:
            return key_partition(serialized_key, len(partitions))
        available = cluster.available_partitions_for_topic(topic)
        return random.choice(list(available or partitions))
