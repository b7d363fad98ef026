"""`tweetner bench pipeline`: human-readable lines, then one JSON object with the agreed keys."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_bench_pipeline_prints_json_last(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA")}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "TAGGER_MODEL_DIR": str(tiny_model_dir), "TAGGER_DEVICE": "cpu",
        "TAGGER_TORCH_THREADS": "1", "TAGGER_SESSION_TIMEOUT_S": "6",
        "TWEETNER_STATE_DIR": str(tmp_path / "state"),
    })
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "bench", "pipeline", "--limit", "100",
                           "--batch-size", "32"], env=env, capture_output=True, timeout=220)
    lines = proc.stdout.decode().strip().splitlines()
    assert proc.returncode == 0, proc.stdout.decode()[-2000:] + proc.stderr.decode()[-3000:]
    assert len(lines) > 1 and "tagger only" in proc.stdout.decode()
    result = json.loads(lines[-1])
    for key in ("pipeline_tweets_per_second", "tagger_tweets_per_second", "latency_p50_ms",
                "latency_p95_ms", "stored_tweets", "lost_tweets"):
        assert key in result
    assert result["lost_tweets"] == 0 and result["stored_tweets"] >= 100
    assert result["pipeline_tweets_per_second"] > 0 and result["latency_p95_ms"] >= result["latency_p50_ms"] > 0
    assert list((tmp_path / "state").iterdir()) == []  # its temporary stack is gone


@pytest.mark.timeout(300)
def test_bench_pipeline_stand_in_checks_by_id_and_measures_each_worker_count(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA",
                        "TAGGER_MODEL_FACTORY")}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "TAGGER_SESSION_TIMEOUT_S": "6", "TWEETNER_STATE_DIR": str(tmp_path / "state"),
    })
    # CPU time is read in clock ticks (10 ms): 300 tweets cost a stage of a fast machine about one
    # tick, often read as none. 3,000 cost each stage several on a machine twice as fast as ours.
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "bench", "pipeline", "--stand-in",
                           "--limit", "3000", "--batch-size", "64", "--workers", "1", "2"],
                          env=env, capture_output=True, timeout=280)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-2000:] + proc.stderr.decode()[-3000:]
    assert "CPU seconds per 1,000 tweets" in out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stand_in"] is True and result["model"].startswith("stand-in")
    assert (result["lost_tweets"], result["duplicate_rows"], result["trend_count_mismatch"]) == (0, 0, 0)
    assert result["mentions_expected"] == result["mentions_stored"] > 0
    assert set(result["pipeline_tweets_per_second_by_workers"]) == {"1", "2"}
    assert all(v > 0 for v in result["pipeline_tweets_per_second_by_workers"].values())
    for run in (result, *result["runs"]):
        # Every stage of the embedded stack used some CPU for the tweets it moved.
        cpu = run["cpu_s_per_1000_tweets"]
        assert {"ingest", "tagger", "sink", "broker", "postgres"} <= set(cpu)
        assert all(cpu[k] > 0 for k in ("tagger", "sink", "postgres"))
    two = result["runs"][0]
    assert two["workers"] == 2 and two["lost_tweets"] == 0
    # Both workers of the one consumer group tagged a share, together every stored tweet.
    assert len(two["tagger_tweets_by_worker"]) == 2 and min(two["tagger_tweets_by_worker"]) > 0
    assert sum(two["tagger_tweets_by_worker"]) >= two["stored_tweets"]
