"""Topics re-created with another partition count under fully running stages (ingest, a tagger
worker and the sink on the embedded stack's broker): what is produced afterwards is stored,
or the tagger says loudly why not (/health 503, one line, in its metrics too); never are tweets
counted as tagged and then lost (issue 11, 4)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from ingest.service import BrokerUnavailable, IngestService
from ingest.settings import IngestSettings
from ingest.synthetic import SyntheticStream
from tests.metrics.scrape import health, scrape
from tests.pipeline.helpers import wait_for
from tests.pipeline.test_end_to_end import _alive
from tweetner.runner import PipelineProcesses, StoredProbe

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return {**pipeline_env, "TAGGER_TOPIC_WATCH_INTERVAL_S": "1", "INGEST_DELIVERY_TIMEOUT_S": "20"}


@pytest.fixture
def procs(env: dict[str, str], tmp_path: Path) -> Iterator[PipelineProcesses]:
    processes = PipelineProcesses(env, tmp_path / "logs", workers=1)
    yield processes
    processes.stop()


def _recreate(bootstrap: str, topics: list[str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(topics)
        wait_for(lambda: not set(topics) & set(admin.list_topics()), 30, "the topics deleted")
        admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
        wait_for(lambda: set(topics) <= set(admin.list_topics()), 30, "the topics re-created")
    finally:
        admin.close()


def test_topics_recreated_with_fewer_partitions_are_stored_or_fail_loudly(
        env: dict[str, str], procs: PipelineProcesses) -> None:
    procs.start()
    procs.wait_ready()
    tagger_url = f"http://127.0.0.1:{procs.workers[0].web_port}"
    ingest = IngestService(IngestSettings.from_env(env))
    ingest.produced_ids = []
    ingest.start()
    tweets = SyntheticStream(seed=3).tweets()
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    try:
        ingest.produce_tweets((next(tweets) for _ in range(20)))
        probe.expect(ingest.produced_ids)
        wait_for(lambda: probe.poll() >= 20, 150, "the first tweets stored", _alive(procs))

        _recreate(env["KAFKA_BOOTSTRAP"], [env["TWEETS_TOPIC"], env["TAGGED_TOPIC"]], 2)
        first = len(ingest.produced_ids)
        try:
            ingest.produce_tweets((next(tweets) for _ in range(20)))
        except BrokerUnavailable as exc:  # loud too: the stage that could not deliver says so
            assert "did not acknowledge" in str(exc)
        probe.expect(ingest.produced_ids[first:])

        def stored_or_unhealthy() -> bool:
            probe.poll()
            return probe.pending == 0 or health(tagger_url)[0] == 503

        wait_for(stored_or_unhealthy, 150, "the new tweets stored or the tagger unhealthy",
                 _alive(procs), interval_s=1.0)
        if probe.pending:
            # Not picked up, so it must be loud: the worker names both topics and their counts.
            status, body = health(tagger_url)
            assert (status, body["status"]) == (503, "unhealthy")
            assert body["reason"] == (
                f"topic {env['TAGGED_TOPIC']} has 2 partitions, worker assumes 4; "
                f"topic {env['TWEETS_TOPIC']} has 2 partitions, worker assumes 4")
            assert scrape(tagger_url).value("tweetner_tagger_healthy") == 0
            # The sink is not the stage that is stuck; it keeps saying it is fine.
            assert (procs.sink_health() or {}).get("status") == "ok"
    finally:
        if ingest.health()["status"] == "ok":
            ingest.stop()
        probe.close()
