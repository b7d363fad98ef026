"""`tweetner up --limit N`: the one-command run on the embedded stack stops by itself."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_up_with_limit_stores_and_stops(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA")}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "TAGGER_MODEL_DIR": str(tiny_model_dir), "TAGGER_DEVICE": "cpu",
        "TAGGER_TORCH_THREADS": "1", "TAGGER_BATCH_SIZE": "32", "TAGGER_SESSION_TIMEOUT_S": "6",
    })
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "up", "--limit", "120",
                           "--state-dir", str(state), "--refresh", "5"],
                          env=env, capture_output=True, timeout=220)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-3000:] + proc.stderr.decode()[-3000:]
    assert "summary: produced 120" in out and "stored 120 tweets" in out
    assert "entity" in out  # the top-entities table
    # Everything it started is gone: no server answers on the ports it printed.
    from tweetner.stack import port_open

    for line in out.splitlines():
        for key in ("KAFKA_BOOTSTRAP=", "REDIS_URL=redis://"):
            if key in line:
                port = int(line.rsplit(":", 1)[1].split("/")[0])
                assert not port_open("127.0.0.1", port)
