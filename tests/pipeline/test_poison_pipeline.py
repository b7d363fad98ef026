"""The pipeline on real servers with a stream that opens with poison records (issue 11): every
clean tweet is stored, every poison record is dead-lettered with a reason, no stage exits or
stalls, and ingesting the same files again (records without ids) adds no rows."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import text

from contracts.messages import DeadLetter
from ingest.service import IngestService
from ingest.settings import IngestSettings
from ingest.sources import read_source
from sink.db import make_engine
from sink.settings import SinkSettings
from tests.pipeline.helpers import group_lag, read_topic, wait_for
from tests.pipeline.test_end_to_end import _alive
from tweetner.runner import PipelineProcesses, StoredProbe

pytestmark = pytest.mark.timeout(300)

_POISON_JSON = [
    b'{"id": "nul", "text": "Obama in Paris\\u0000"}',
    b'{"id": "year1", "text": "Obama in Paris", "created_at": "0001-01-01T00:00:00+05:00"}',
    b'{"id": "' + b"8" * 9000 + b'", "text": "Obama in Paris"}',
    b'{"id": "surrogate", "text": "Obama \\ud800 Paris"}',
    b'{"id": "escape", "text": "Obama \\u001b[31m Paris"}',
    b'{"id": "far-future", "text": "Obama", "created_at": "9999-12-31T23:59:59-05:00"}',
]
_POISON_TEXT = [b"Obama in Paris\x00 again", b"bell \x07 in Paris"]


def _write_inputs(tmp_path: Path, clean: int) -> tuple[Path, Path]:
    jsonl = tmp_path / "poison.jsonl"
    # No ids and no created_at: ids must come from content and position, not the clock.
    lines = _POISON_JSON + [json.dumps({"text": f"Tweet {i} about Obama in Paris"}).encode()
                            for i in range(clean)]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    plain = tmp_path / "poison.txt"
    plain.write_bytes(b"\n".join(_POISON_TEXT + [f"plain {i} NASA".encode() for i in range(clean)])
                      + b"\n")
    return jsonl, plain


def _ingest(env: dict[str, str], *paths: Path) -> tuple[list[str], int]:
    service = IngestService(IngestSettings.from_env(env))
    service.produced_ids = []
    service.start()
    try:
        for path in paths:
            service.run(read_source(str(path)))
    finally:
        service.stop()
    return service.produced_ids, service.summary.rejected


@pytest.fixture
def procs(pipeline_env: dict[str, str], tmp_path: Path) -> Iterator[PipelineProcesses]:
    processes = PipelineProcesses(pipeline_env, tmp_path / "logs", workers=1)
    yield processes
    processes.stop()


def test_poison_first_then_clean_tweets_and_reingest_adds_nothing(
        pipeline_env: dict[str, str], procs: PipelineProcesses, tmp_path: Path) -> None:
    env = pipeline_env
    jsonl, plain = _write_inputs(tmp_path, clean=40)
    procs.start()
    procs.wait_ready()

    ids, rejected = _ingest(env, jsonl, plain)
    assert (len(set(ids)), rejected) == (80, len(_POISON_JSON) + len(_POISON_TEXT))
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    probe.expect(ids)
    wait_for(lambda: probe.poll() >= 80, 150, "every clean tweet stored", _alive(procs))

    dead = [DeadLetter.model_validate_json(r.value)
            for r in read_topic(env["KAFKA_BOOTSTRAP"], env["DEADLETTER_TOPIC"])]
    assert len(dead) == rejected and all(d.stage == "ingest" and d.reason for d in dead)

    engine = make_engine(SinkSettings.from_env(env))

    def counts() -> tuple[int, int]:
        with engine.connect() as conn:
            return (conn.execute(text("SELECT count(*) FROM tweets")).scalar_one(),
                    conn.execute(text("SELECT coalesce(sum(count), 0) FROM trend_minute")).scalar_one())

    before = counts()
    assert before[0] == 80
    again, _ = _ingest(env, jsonl, plain)
    assert set(again) == set(ids)

    def drained() -> bool:
        return (group_lag(env["KAFKA_BOOTSTRAP"], env["TAGGER_GROUP"], env["TWEETS_TOPIC"]) == 0
                and group_lag(env["KAFKA_BOOTSTRAP"], env["SINK_GROUP"], env["TAGGED_TOPIC"]) == 0)

    wait_for(drained, 120, "the second ingest processed to the end", _alive(procs))
    assert counts() == before
    assert not procs.check_alive()
