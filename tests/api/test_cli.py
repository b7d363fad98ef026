"""`tweetner dashboard` as a user runs it: it prints its URL, serves until Ctrl-C, and a port
that is taken is one line and exit code 1."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "TWEETNER_STATE_DIR")}
    env.update(DATABASE_URL=settings.database_url, DATABASE_SCHEMA=settings.database_schema,
               REDIS_URL=settings.redis_url, REDIS_PREFIX=settings.redis_prefix,
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    return env


@pytest.mark.timeout(120)
def test_dashboard_command_prints_its_url_and_stops_on_ctrl_c(api_settings, session_engine,
                                                              tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tweetner.cli", "dashboard", "--port", "0"],
                            env=_env(api_settings), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the server is up (or the command died)
        assert line.startswith("dashboard: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1]
        with urllib.request.urlopen(url + "trends?window=1h", timeout=30) as resp:
            assert json.loads(resp.read())["kind"] == "top"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert b"dashboard.js" in resp.read()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, proc.stderr.read()


def test_dashboard_on_a_taken_port_is_one_line(api_settings, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "tweetner.cli", "dashboard", "--port",
                               str(port)], env=_env(api_settings), cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on port {port}" in lines[0], proc.stderr
    assert "--port" in lines[0]
