"""`tweetner up` shows the health of its tagger worker and its sink (from their health
endpoints) after start-up and while running: plain lines when piped, one table redrawn in
place on a terminal."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tweetner.up import default_workers
from tweetner.up_status import StageHealth, StatusView

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_up_piped_prints_the_stages_health(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA")}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "TAGGER_MODEL_DIR": str(tiny_model_dir), "TAGGER_DEVICE": "cpu",
        "TAGGER_TORCH_THREADS": "1", "TAGGER_BATCH_SIZE": "32", "TAGGER_SESSION_TIMEOUT_S": "6",
    })
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "up", "--limit", "60",
                           "--state-dir", str(tmp_path / "state"), "--refresh", "1",
                           "--no-dashboard"],
                          env=env, capture_output=True, timeout=220)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out[-3000:] + proc.stderr.decode()[-3000:]
    lines = out.splitlines()
    ready = lines.index(next(l for l in lines if l.startswith("pipeline ready")))
    # Right after start-up, before ingesting: every stage answers on its health port (two tagger
    # workers on this CPU: `up`'s default where the model runs on a CPU of two or more cores).
    workers = default_workers({"TAGGER_DEVICE": "cpu"})
    assert f"tagger x{workers} and sink starting" in out
    tagger_health = ", ".join(f"tagger-{i} ok" for i in range(workers))
    assert lines[ready - 1] == f"health: {tagger_health}, sink ok"
    assert "\x1b[" not in out  # piped: no cursor movement, no colours


def test_the_terminal_view_redraws_one_table_with_each_stage() -> None:
    screen = io.StringIO()
    view = StatusView(screen, live=True)
    view.start()
    view.update("[  1.0s] produced 5", [StageHealth("tagger-0", "ok"),
                                        StageHealth("sink", "unhealthy", "PostgreSQL write failed")], [])
    view.update("[  2.0s] produced 9", [StageHealth("tagger-0", "ok"), StageHealth("sink", "ok")], [])
    view.stop()
    drawn = screen.getvalue()
    assert "PostgreSQL write failed" in drawn and "produced 9" in drawn
    assert drawn.count("tagger-0") >= 2
    assert "\x1b[2K" in drawn  # the second frame erased the first's lines: redrawn in place


def test_piped_view_repeats_health_only_when_it_changes() -> None:
    out = io.StringIO()
    view = StatusView(out, live=False)
    healthy = [StageHealth("tagger-0", "ok"), StageHealth("sink", "ok")]
    view.update("one", healthy, [])
    view.update("two", healthy, [])
    view.update("three", [healthy[0], StageHealth("sink", "unhealthy", "PostgreSQL down")], [])
    text = out.getvalue()
    assert text.count("health: tagger-0 ok, sink ok") == 1
    assert "health: tagger-0 ok, sink unhealthy (PostgreSQL down)" in text
