"""Topics re-created with another partition count under a running tagger: its health says so."""
from __future__ import annotations

import secrets

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from tagger.worker.agent import TopicWatch
from tests.pipeline.helpers import wait_for


def test_recreated_topics_with_another_partition_count_are_reported(broker):
    topic = f"watch-{secrets.token_hex(3)}"
    admin = KafkaAdminClient(bootstrap_servers=broker.url)
    admin.create_topics([NewTopic(topic, 4, 1)])
    watch = TopicWatch(broker.url, {topic: 4})
    try:
        wait_for(lambda: watch.check() is None, 30, "the topic to be seen")
        admin.delete_topics([topic])
        wait_for(lambda: watch.check() == f"topic {topic} vanished", 30, "the deletion to be seen")
        admin.create_topics([NewTopic(topic, 2, 1)])
        wait_for(lambda: watch.check() == f"topic {topic} has 2 partitions, worker assumes 4",
                 30, "the new partition count to be seen")
    finally:
        watch.close()
        admin.close()
