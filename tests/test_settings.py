"""One typed settings class per stage on one base: shared names and defaults, one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.settings import SettingsError, StageSettings
from ingest.settings import IngestSettings
from sink.settings import SinkSettings
from tagger.worker.settings import AgentSettings

ROOT = Path(__file__).resolve().parent.parent


def test_every_stage_reads_the_shared_variables_the_same_way() -> None:
    env = {"KAFKA_BOOTSTRAP": "broker:1", "TWEETS_TOPIC": "raw", "TAGGED_TOPIC": "done",
           "DEADLETTER_TOPIC": "bad", "TOPIC_PARTITIONS": "3"}
    for cls in (IngestSettings, AgentSettings, SinkSettings):
        s = cls.from_env(env)
        assert s.kafka_bootstrap == "broker:1"
        assert (s.topics.tweets, s.topics.tagged, s.topics.deadletter, s.topics.partitions) == (
            "raw", "done", "bad", 3)
    defaults = StageSettings.from_env({})
    assert all(cls.from_env({}).topics == defaults.topics for cls in (IngestSettings, AgentSettings, SinkSettings))


def test_stage_variables_units_and_overrides() -> None:
    s = SinkSettings.from_env({"SINK_BATCH_SIZE": "7", "TWEET_RETENTION_DAYS": "2",
                               "TREND_LIVE_HORIZON_MINUTES": "30", "REDIS_PREFIX": ""},
                              database_schema="other")
    assert (s.batch_size, s.tweet_retention, s.live_horizon) == (7, timedelta(days=2), timedelta(minutes=30))
    assert s.database_schema == "other" and s.redis_prefix == "tweetner:"  # empty counts as unset
    assert s.with_(batch_size=3).batch_size == 3 and s.batch_size == 7
    a = AgentSettings.from_env({"TAGGER_MODEL_DIR": "", "TAGGER_TORCH_THREADS": "1"})
    assert a.model_dir is None and a.torch_threads == 1
    assert IngestSettings.from_env({"INGEST_UNESCAPE_HTML": "0"}).unescape_html is False


def test_a_given_mapping_is_read_instead_of_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINK_BATCH_SIZE", "11")
    assert SinkSettings.from_env().batch_size == 11
    assert SinkSettings.from_env({}).batch_size == 2000


@pytest.mark.parametrize("env, named", [
    ({"SINK_BATCH_SIZE": "abc"}, "SINK_BATCH_SIZE"),
    ({"SINK_BATCH_SIZE": "0"}, "SINK_BATCH_SIZE"),
    ({"DATABASE_SCHEMA": "a-b"}, "DATABASE_SCHEMA"),
    ({"TOPIC_PARTITIONS": "x"}, "TOPIC_PARTITIONS"),
    ({"TWEET_RETENTION_DAYS": "soon"}, "TWEET_RETENTION_DAYS"),
])
def test_a_bad_value_names_its_variable_on_one_line(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        SinkSettings.from_env(env)
    message = str(caught.value)
    assert message.startswith(f"{named}: ") and "\n" not in message


def test_the_command_prints_the_one_line_and_exits_2() -> None:
    env = {**os.environ, "SINK_BATCH_SIZE": "abc"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "-m", "tweetner.cli", "sink"], env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("tweetner sink: SINK_BATCH_SIZE: ") and "'abc'" in lines[-1]
    assert "Traceback" not in result.stderr
