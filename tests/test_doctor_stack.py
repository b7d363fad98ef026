"""`tweetner doctor` with no server variables set finds the embedded stack the other commands
would use (its stack file in TWEETNER_STATE_DIR), on the machine's real servers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_doctor import MACHINE_DATABASE_URL, MACHINE_REDIS_URL, ROOT
from tweetner.stack import free_port


def _doctor(state_dir: Path) -> dict[str, tuple[str, str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP", "DATABASE_SCHEMA")}
    env.update(TWEETNER_STATE_DIR=str(state_dir),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "doctor"], env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    found = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "note", "FAIL"):
            found[parts[1]] = (parts[0], parts[2])
    return found


def test_doctor_checks_the_running_embedded_stack(tmp_path: Path) -> None:
    closed = free_port()
    # A stack file as `tweetner stack` writes it, served by a live process (this one).
    (tmp_path / "stack.json").write_text(json.dumps({"pid": os.getpid(), "env": {
        "DATABASE_URL": MACHINE_DATABASE_URL, "REDIS_URL": MACHINE_REDIS_URL,
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}", "DATABASE_SCHEMA": "public"}}))
    found = _doctor(tmp_path)
    assert found["postgres"][0] == "ok" and f"embedded stack in {tmp_path}/" in found["postgres"][1]
    assert found["redis"][0] == "ok" and f"pid {os.getpid()}" in found["redis"][1]
    # The stack says Kafka is there and it is not: that is a failure, with the fix.
    assert found["kafka"][0] == "FAIL"
    assert f"127.0.0.1:{closed}" in found["kafka"][1] and "tweetner stack" in found["kafka"][1]


def test_doctor_says_a_stopped_embedded_stack_keeps_its_data(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(json.dumps({"pid": None, "env": {
        "DATABASE_URL": "postgresql://postgres:x@127.0.0.1:1/postgres"}}))
    data = tmp_path / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("16\n")  # what the database commands look for
    found = _doctor(tmp_path)
    status, detail = found["postgres"]
    assert status == "note" and "stopped with its data kept" in detail
    assert "tweetner trends" in detail
