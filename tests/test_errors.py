"""Mistakes a person makes end in one line naming the cause and the fix, and a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tweetner(*args: str, env: dict[str, str] | None = None, stdin: str = "",
             cwd: Path | None = None) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA")}
    base["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", *args], env={**base, **(env or {})},
                          input=stdin.encode(), capture_output=True, timeout=120, cwd=cwd)
    return proc.returncode, proc.stderr.decode()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "--version"], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 0 and proc.stdout.decode().startswith("tweetner ")


def test_trends_negative_limit() -> None:
    code, err = tweetner("trends", "--limit", "-1")
    assert code == 2
    assert "--limit: must be 1 or more (got -1)" in one_line(err)


def test_trends_closed_database_url(tmp_path: Path) -> None:
    code, err = tweetner("trends", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
                         cwd=tmp_path)
    assert code == 1
    line = one_line(err)
    assert "cannot use PostgreSQL at postgresql://postgres@127.0.0.1:1/x" in line
    assert "fix DATABASE_URL" in line


def test_trends_database_without_schema(tmp_path: Path) -> None:
    # The machine's server has a `postgres` database the suite never creates tables in.
    code, err = tweetner("trends", "--no-cache",
                         env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres"},
                         cwd=tmp_path)
    assert code == 1
    assert "tweetner sink init-db" in one_line(err)


def test_bad_setting_names_the_variable() -> None:
    code, err = tweetner("sink", env={"SINK_BATCH_SIZE": "abc"})
    assert code == 2
    assert one_line(err).startswith("tweetner sink: SINK_BATCH_SIZE:")


def test_ingest_unreachable_broker_fails_fast() -> None:
    code, err = tweetner("ingest", env={"KAFKA_BOOTSTRAP": "127.0.0.1:1"}, stdin="hello\n")
    assert code == 1
    assert "Kafka at 127.0.0.1:1 is unreachable" in one_line(err)


def test_predict_missing_model() -> None:
    code, err = tweetner("predict", "--model", "/nonexistent", "hello")
    assert code == 2
    assert "/nonexistent is not a model directory (no config.json)" in one_line(err)


def test_predict_missing_input(tmp_path: Path) -> None:
    code, err = tweetner("predict", "--input", str(tmp_path / "nope.txt"))
    assert code == 2
    assert "does not exist" in one_line(err)


def test_evaluate_missing_data(tmp_path: Path) -> None:
    code, err = tweetner("evaluate", "--data", str(tmp_path / "nope.conll"))
    assert code == 2
    assert "--data" in one_line(err) and "does not exist" in one_line(err)


def test_evaluate_refuses_a_file_without_conll_sentences(tmp_path: Path) -> None:
    text = tmp_path / "tweets.txt"
    text.write_text("just some words\nand more words\n")
    code, err = tweetner("evaluate", "--data", str(text))
    assert code == 2
    assert "holds no CoNLL sentences" in err.splitlines()[-1]
