"""`tweetner up` serves the dashboard at the URL it prints, over the stack it started: the page
shows the entities the running pipeline stores, and the API sees the broker's figures."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.pipeline.conftest import tiny_model_dir  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _until(what: str, check, timeout_s: float = 240.0):
    """Polls ``check`` until it returns something truthy; fails naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.timeout(420)
def test_up_serves_the_dashboard_at_the_printed_url(tiny_model_dir: Path, tmp_path: Path,  # noqa: F811
                                                    page) -> None:
    from playwright.sync_api import expect

    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "DATABASE_SCHEMA",
                        "TWEETNER_STATE_DIR", "TWEETNER_API_PORT")}
    env.update({
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        "TAGGER_MODEL_DIR": str(tiny_model_dir), "TAGGER_DEVICE": "cpu",
        "TAGGER_TORCH_THREADS": "1", "TAGGER_BATCH_SIZE": "16", "TAGGER_SESSION_TIMEOUT_S": "6",
    })
    proc = subprocess.Popen([sys.executable, "-m", "tweetner.cli", "up", "--rate", "20",
                             "--state-dir", str(tmp_path / "state"), "--dashboard-port", "0",
                             "--refresh", "30", "--drain", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def dashboard_line() -> str | None:
        while not lines.empty():
            seen.append(lines.get())
        if proc.poll() is not None:
            pytest.fail(f"up exited with {proc.returncode}: {''.join(seen)[-3000:]}")
        return next((line for line in seen if line.strip().startswith("dashboard: http")), None)

    try:
        url = _until("up to print the dashboard's URL", dashboard_line).split()[1]
        rows = _until("stored entities in /trends",
                      lambda: _get(url + "trends?window=1h&limit=5")["rows"])
        kafka = _until("tweets on the broker in /pipeline",
                       lambda: (k := _get(url + "pipeline")["kafka"]) and k.get("ingested_total") and k)
        assert kafka["reachable"] and {g["group"] for g in kafka["lag"]} == {
            "tweetner-tagger", "tweetner-sink"}
        page.goto(url)
        expect(page.locator("#top tbody tr[data-entity]").first).to_be_visible(timeout=60_000)
        assert rows[0]["count"] >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
