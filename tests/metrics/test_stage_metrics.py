"""Every stage's /metrics on the real servers (Tansu broker, the machine's PostgreSQL and Redis,
the tagger and the sink as their own processes): prometheus-client's parser reads each of
them, and the counters follow a test stream with bad records in it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from kafka import KafkaProducer

from ingest.metrics import ingest_http_server
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.sources import read_source
from tests.metrics.scrape import health, scrape
from tests.pipeline.helpers import wait_for
from tests.pipeline.test_end_to_end import _alive
from tweetner.runner import PipelineProcesses, StoredProbe

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def procs(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[PipelineProcesses]:
    processes = PipelineProcesses(pipeline_env, tmp_path / "logs", workers=1)
    yield processes
    processes.stop()


def test_every_stage_serves_prometheus_metrics_that_follow_a_stream(
        pipeline_env: dict[str, str], procs: PipelineProcesses, tmp_path: Path) -> None:
    env = pipeline_env
    procs.start()
    procs.wait_ready()
    tagger_url = f"http://127.0.0.1:{procs.workers[0].web_port}"
    sink_url = f"http://127.0.0.1:{procs.sink_port}"
    wait_for(lambda: procs.sink_health() is not None, 60, "the sink's HTTP port", _alive(procs))

    ingest = IngestService(IngestSettings.from_env(env, http_port=0))
    ingest.produced_ids = []
    http = ingest_http_server(ingest)
    assert http is not None
    http.start()
    try:
        for url, stage in ((tagger_url, "tagger"), (sink_url, "sink"), (http.url, "ingest")):
            assert scrape(url).value(f"tweetner_{stage}_tweets_in_total") == 0, stage
            assert health(url)[0] == 200, stage

        inputs = tmp_path / "tweets.jsonl"
        lines = [json.dumps({"id": f"m{i}", "text": f"Obama met NASA in Paris {i}"})
                 for i in range(30)]
        inputs.write_text("\n".join(lines[:10] + ["{not json"] + lines[10:]) + "\n")
        ingest.start()
        ingest.run(read_source(str(inputs)))
        # A record no ingest would send: the tagger dead-letters it.
        producer = KafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP"], acks="all")
        producer.send(env["TWEETS_TOPIC"], key=b"bad", value=b"\x00 not a tweet").get(30)
        producer.close()

        probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
        probe.expect(ingest.produced_ids)
        wait_for(lambda: probe.poll() >= 30, 150, "the stream stored", _alive(procs))
        probe.close()

        got = scrape(http.url)
        assert got.value("tweetner_ingest_tweets_in_total") == 31
        assert got.value("tweetner_ingest_tweets_out_total") == 30
        assert got.value("tweetner_ingest_dead_letters_total", reason="invalid JSON") == 1
        assert got.value("tweetner_ingest_batch_latency_seconds_count") >= 1

        wait_for(lambda: scrape(tagger_url).value("tweetner_tagger_tweets_in_total") >= 31, 60,
                 "the tagger's counters", _alive(procs))
        tagger = scrape(tagger_url)
        [model] = tagger.labels("tweetner_tagger_model_info")
        assert tagger.value("tweetner_tagger_tweets_in_total") == 31
        assert tagger.value("tweetner_tagger_tweets_out_total", **model) == 30
        assert tagger.value("tweetner_tagger_dead_letters_total", reason="invalid Tweet") == 1
        assert tagger.value("tweetner_tagger_batch_latency_seconds_count") >= 1
        assert tagger.value("tweetner_tagger_model_latency_seconds_count", **model) >= 1
        assert tagger.value("tweetner_tagger_healthy") == 1
        assert {l["topic"] for l in tagger.labels("tweetner_tagger_consumer_lag")} == {
            env["TWEETS_TOPIC"]}
        wait_for(lambda: scrape(tagger_url).value("tweetner_tagger_consumer_lag") == 0, 60,
                 "the tagger's lag to reach 0", _alive(procs))

        wait_for(lambda: scrape(sink_url).value("tweetner_sink_tweets_out_total") >= 30, 60,
                 "the sink's counters", _alive(procs))
        sink = scrape(sink_url)
        assert sink.value("tweetner_sink_tweets_in_total") == 30
        assert sink.value("tweetner_sink_tweets_out_total", **model) == 30
        assert sink.value("tweetner_sink_healthy") == 1
        assert health(sink_url) == (200, {"status": "ok", "reason": None})
        wait_for(lambda: scrape(sink_url).value("tweetner_sink_consumer_lag") == 0, 60,
                 "the sink's lag to reach 0", _alive(procs))
    finally:
        ingest.stop()
        http.stop()
