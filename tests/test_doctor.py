"""`tweetner doctor` against the machine's real PostgreSQL and Redis and a closed Kafka port."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tweetner.doctor import FAIL, NOTE, OK, check_cpu
from tweetner.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
MACHINE_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MACHINE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _doctor(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "tweetner.cli", "doctor", *args], env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def _lines(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in (OK, NOTE, FAIL):
            found[parts[1]] = parts[0]
    return found


def test_doctor_reports_each_part_and_fails_on_a_configured_server_that_is_down() -> None:
    closed = free_port()
    result = _doctor({"DATABASE_URL": MACHINE_DATABASE_URL, "REDIS_URL": MACHINE_REDIS_URL,
                      "KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}"})
    lines = _lines(result.stdout)
    assert lines == {"python": lines["python"], "torch": OK, "cpu": OK, "model": OK,
                     "postgres": OK, "redis": OK, "kafka": FAIL}, result.stdout + result.stderr
    assert result.returncode == 1
    assert f"KAFKA_BOOTSTRAP=127.0.0.1:{closed}" in result.stdout
    assert "Traceback" not in result.stderr


def test_doctor_notes_unset_servers_and_fails_on_a_missing_model(tmp_path: Path) -> None:
    closed = free_port()
    result = _doctor({"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/test"},
                     "--model", str(tmp_path / "nowhere"))
    lines = _lines(result.stdout)
    assert lines["model"] == FAIL and lines["postgres"] == FAIL
    assert lines["redis"] in (OK, NOTE) and lines["kafka"] in (OK, NOTE)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_cpu_line_says_why_bf16_is_or_is_not_used() -> None:
    assert "bf16 has native instructions" in check_cpu({"avx2", "avx512f", "avx512_bf16"}).detail
    assert "5x slower" in check_cpu({"avx2", "fma"}).detail
