"""The tagger's health tells repeated failures: a model that fails on every tweet of batch
after batch turns the stream into dead letters, which looks like progress; after 3 such
batches in a row /health is 503 with the reason, and a batch that tags again clears it."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import pytest

from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.synthetic import SyntheticStream
from tests.metrics.scrape import health, scrape
from tests.pipeline.helpers import wait_for
from tests.pipeline.test_end_to_end import _alive
from tweetner.runner import PipelineProcesses

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def procs(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[PipelineProcesses]:
    # The stand-in model raises on any text with BOOM in it (tests/pipeline/fake_model.py).
    env = dict(pipeline_env, TAGGER_MODEL_FACTORY="tests.pipeline.fake_model:load")
    processes = PipelineProcesses(env, tmp_path / "logs", workers=1, sink=False)
    yield processes
    processes.stop()


def test_a_model_failing_on_every_batch_makes_the_tagger_unhealthy(
        pipeline_env: dict[str, str], procs: PipelineProcesses) -> None:
    procs.start()
    procs.wait_ready()
    url = f"http://127.0.0.1:{procs.workers[0].web_port}"
    ingest = IngestService(IngestSettings.from_env(pipeline_env))
    ingest.start()
    tweets = SyntheticStream(seed=5).tweets()

    def send(n: int, text: str | None = None) -> None:
        batch = [t if text is None else t.model_copy(update={"text": f"{text} {i}"})
                 for i, t in enumerate(itertools.islice(tweets, n))]
        ingest.produce_tweets(batch)

    def dead() -> float:
        return scrape(url).value("tweetner_tagger_dead_letters_total", reason="model error")

    try:
        assert health(url)[0] == 200
        for round_ in range(1, 4):  # each round is read as at least one batch of its own
            send(5, "BOOM goes Paris")
            wait_for(lambda: dead() >= 5 * round_, 60, f"round {round_} dead-lettered",
                     _alive(procs))
        wait_for(lambda: health(url)[0] == 503, 30, "/health to answer 503", _alive(procs))
        body = health(url)[1]
        assert body["status"] == "unhealthy"
        assert body["reason"].startswith(
            f"the model failed on every tweet of the batch at {pipeline_env['TWEETS_TOPIC']}/")
        assert "model error: RuntimeError" in body["reason"] and "times in a row)" in body["reason"]
        assert scrape(url).value("tweetner_tagger_healthy") == 0

        send(5)  # clean tweets: the model tags them, the streak ends
        wait_for(lambda: health(url)[0] == 200, 60, "/health to recover", _alive(procs))
        assert scrape(url).value("tweetner_tagger_tweets_out_total") == 5
    finally:
        ingest.stop()
