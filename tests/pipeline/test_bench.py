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
