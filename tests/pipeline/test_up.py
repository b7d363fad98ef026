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


@pytest.mark.timeout(300)
def test_trends_after_up_finds_the_embedded_database(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`up` stops its servers, but its data stays: `trends` with no variable set reads it."""
    import json

    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA",
                        "TWEETNER_STATE_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    up_env = dict(env, TAGGER_MODEL_DIR=str(tiny_model_dir), TAGGER_DEVICE="cpu",
                  TAGGER_TORCH_THREADS="1", TAGGER_BATCH_SIZE="32", TAGGER_SESSION_TIMEOUT_S="6")
    # Both run in the same directory with the default state dir (.state), as a user would.
    up = subprocess.run([sys.executable, "-m", "tweetner.cli", "up", "--limit", "60",
                         "--refresh", "5"], env=up_env, capture_output=True, timeout=220,
                        cwd=tmp_path)
    assert up.returncode == 0, up.stdout.decode()[-3000:] + up.stderr.decode()[-3000:]
    assert "query it afterwards with `tweetner trends`" in up.stdout.decode()
    state_file = tmp_path / ".state" / "stack.json"
    assert state_file.stat().st_mode & 0o077 == 0  # it holds the database password

    trends = subprocess.run([sys.executable, "-m", "tweetner.cli", "trends", "--json",
                             "--window", "2d", "--limit", "50"],
                            env=env, capture_output=True, timeout=120, cwd=tmp_path)
    assert trends.returncode == 0, trends.stderr.decode()[-3000:]
    rows = json.loads(trends.stdout.decode().strip().splitlines()[-1])
    assert rows and all(r["count"] > 0 for r in rows)

    # The same entities as the database holds, read straight from it.
    from sqlalchemy import create_engine, text

    from sink.db import engine_url
    from tweetner.stack import embedded_postgres

    pg = embedded_postgres(tmp_path / ".state")
    pg.start()
    try:
        engine = create_engine(engine_url(pg.url))
        with engine.connect() as conn:
            stored = {(e, label) for e, label in conn.execute(
                text("SELECT DISTINCT normalized, label FROM current_mentions"))}
        engine.dispose()
    finally:
        pg.stop()
    assert {(r["entity"], r["label"]) for r in rows} <= stored


@pytest.mark.timeout(400)
def test_second_up_over_the_same_input_says_what_it_skipped(tiny_model_dir: Path,
                                                             tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA")}
    env.update({"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
                "TAGGER_MODEL_DIR": str(tiny_model_dir), "TAGGER_DEVICE": "cpu",
                "TAGGER_TORCH_THREADS": "1", "TAGGER_BATCH_SIZE": "32",
                "TAGGER_SESSION_TIMEOUT_S": "6"})
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("".join(f"Tweet number {i} about Paris and Barack Obama\n" for i in range(30)))

    def up() -> str:
        proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "up", "--input", str(tweets),
                               "--limit", "30", "--state-dir", str(tmp_path / "state"),
                               "--refresh", "5"], env=env, capture_output=True, timeout=180)
        out = proc.stdout.decode()
        assert proc.returncode == 0, out[-3000:] + proc.stderr.decode()[-3000:]
        return out

    first = up()
    assert "stored 30 tweets in" in first
    second = up()
    assert "stored 0 tweets (30 already stored by an earlier run: skipped)" in second


def test_up_runs_two_workers_on_a_cpu_and_one_on_a_gpu() -> None:
    from tweetner.up import default_workers

    cores = len(os.sched_getaffinity(0))
    assert default_workers({"TAGGER_DEVICE": "cpu"}) == min(2, cores)
    assert default_workers({"TAGGER_DEVICE": "cuda"}) == 1
    assert default_workers({"TAGGER_DEVICE": "cuda:1"}) == 1
    # Unset: the device the worker will pick, judged by whether an NVIDIA driver is loaded.
    expected = 1 if Path("/proc/driver/nvidia/version").exists() else min(2, cores)
    assert default_workers({}) == expected


def test_up_refuses_zero_workers_before_starting_anything(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "up", "--workers", "0",
                           "--state-dir", str(tmp_path / "state")],
                          capture_output=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2
    assert "--workers: must be 1 or more (got 0)" in proc.stderr.decode()
    assert not (tmp_path / "state").exists()
