"""The pipeline end to end with the word-level backends: ingest -> Tansu -> Faust tagger -> sink ->
PostgreSQL, with TAGGER_MODEL_DIR pointing at a token-classification checkpoint or a BiLSTM-CRF,
and nothing else changed (issue 15 acceptance). Every stored mention slices its tweet's raw text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.sources import read_source
from sink.db import make_engine
from sink.settings import SinkSettings
from tests.fixtures.tiny_backends import RAW_TWEETS, make_tiny_bilstm_crf, make_tiny_token_classifier
from tests.pipeline.helpers import wait_for
from tweetner.runner import PipelineProcesses, StoredProbe
from tweetner.stack import log_tail

pytestmark = pytest.mark.timeout(300)

BUILDERS = {"token-classification": make_tiny_token_classifier, "bilstm-crf": make_tiny_bilstm_crf}
# A transformers checkpoint without tweetner metadata is named after its directory.
MODEL_NAMES = {"token-classification": "token-classification", "bilstm-crf": "tiny-bilstm-crf"}


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_pipeline_stores_what_the_backend_tags(arch: str, pipeline_env: dict[str, str], tmp_path: Path) -> None:
    model_dir = BUILDERS[arch](tmp_path / arch)
    env = {**pipeline_env, "TAGGER_MODEL_DIR": str(model_dir)}
    path = tmp_path / "tweets.jsonl"
    tweets = {f"{arch}-{i}": f"{t} #{i}" for i, t in enumerate(RAW_TWEETS)}
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in tweets.items()))
    procs = PipelineProcesses(env, tmp_path / "logs", workers=1)
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    engine = make_engine(SinkSettings.from_env(env))
    try:
        procs.start()
        procs.wait_ready()
        service = IngestService(IngestSettings.from_env(env))
        service.start()
        try:
            assert service.run(read_source(str(path))).produced == len(tweets)
        finally:
            service.stop()
        probe.expect(tweets)

        def alive() -> None:
            dead = procs.check_alive()
            assert not dead, "".join(log_tail(procs.log_dir / f"{name}.log", 60) for name in dead)

        wait_for(lambda: probe.poll() >= len(tweets), 150, "tweets stored", alive)
        with engine.connect() as conn:
            names = set(conn.execute(text("SELECT DISTINCT model_name FROM tweets")).scalars())
            mentions = conn.execute(text("SELECT tweet_id, char_start, char_end, label, surface FROM mentions")).all()
    finally:
        procs.stop()
        probe.close()
        engine.dispose()
    assert names == {MODEL_NAMES[arch]}
    assert mentions, f"the tiny {arch} model tagged nothing"
    for m in mentions:
        assert tweets[m.tweet_id][m.char_start:m.char_end] == m.surface
    if arch == "bilstm-crf":  # trained on these names: the stream's copies are found and stored
        surfaces = {(m.surface, m.label) for m in mentions}
        assert {("Taylor Swift", "person"), ("London", "geo-loc"), ("Paris", "geo-loc")} <= surfaces
