"""Running the pipeline's stages as child processes and watching tweets arrive in PostgreSQL.

`tweetner up`, `tweetner bench pipeline` and the pipeline tests share this: tagger workers and
the sink run as their own processes (``tweetner tagger`` / ``tweetner sink``, exactly what a
deployment runs), ingest runs in-process so the caller knows which ids it produced.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Mapping, Sequence

from tweetner.stack import Stack, free_port, log_tail, stop_process

log = logging.getLogger(__name__)


@dataclass
class ChildProcess:
    """One ``tweetner`` subcommand in its own process, logging to a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tweetner.cli", *self.argv], env=self.env,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.info("%s started (pid %d, log %s)", self.name, self.proc.pid, self.log_path)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        stop_process(self.proc, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if self.proc is None else self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash looks like to Kafka."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Worker(ChildProcess):
    web_port: int = 0

    def metrics(self, timeout_s: float = 2.0) -> dict | None:
        return _get_json(f"http://127.0.0.1:{self.web_port}/metrics.json", timeout_s)

    def health(self, timeout_s: float = 2.0) -> dict | None:
        return _get_json(f"http://127.0.0.1:{self.web_port}/health/", timeout_s)


def _get_json(url: str, timeout_s: float) -> dict | None:
    """The JSON body of ``url``, also when the status is an error (health answers 503 with a
    body saying why); None when nothing answers."""
    import urllib.error

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - local URL
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return json.loads(exc.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


class PipelineProcesses:
    """Tagger workers and the sink as child processes pointed at ``stack``."""

    def __init__(self, stack_env: Mapping[str, str], log_dir: Path, *, workers: int = 1,
                 extra_env: Mapping[str, str] | None = None, sink: bool = True) -> None:
        self.env = {**os.environ, **stack_env, **(extra_env or {})}
        # Child processes must import this checkout even when it is not installed.
        root = str(Path(__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (root, self.env.get("PYTHONPATH")) if p)
        self.env.setdefault("TAGGER_DATA_DIR", str(log_dir / "tagger"))
        self.log_dir = log_dir
        self._spawned = 0
        self.workers: list[Worker] = [self._worker() for _ in range(workers)]
        # The sink serves /metrics and /health on a port of its own (sink.http).
        self.sink_port = free_port()
        self.sink = ChildProcess("sink", ["sink"], dict(self.env, SINK_HTTP_PORT=str(self.sink_port)),
                                 log_dir / "sink.log") if sink else None

    def _worker(self) -> Worker:
        i, self._spawned = self._spawned, self._spawned + 1
        port = free_port()
        env = dict(self.env, TAGGER_WEB_PORT=str(port))
        return Worker(f"tagger-{i}", ["tagger"], env, self.log_dir / f"tagger-{i}.log", web_port=port)

    def add_worker(self) -> Worker:
        worker = self._worker()
        self.workers.append(worker)
        worker.start()
        return worker

    def kill_worker(self, worker: Worker) -> int | None:
        """SIGKILL one worker (a crash, as Kafka sees it) and forget it; returns its exit code."""
        worker.kill()
        worker.stop()
        self.workers.remove(worker)
        return None if worker.proc is None else worker.proc.returncode

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        if self.sink is not None:
            self.sink.start()

    def stop(self) -> None:
        # Stop in parallel: each waits for its own graceful shutdown.
        children: list[ChildProcess] = [*self.workers] + ([self.sink] if self.sink else [])
        threads = [threading.Thread(target=c.stop) for c in children]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def check_alive(self) -> list[str]:
        """Names of children that died (their logs say why)."""
        children: list[ChildProcess] = [*self.workers] + ([self.sink] if self.sink else [])
        return [c.name for c in children if c.proc is not None and not c.alive]

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until every worker serves /health/ with partitions assigned."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.workers)
        while pending:
            dead = self.check_alive()
            if dead:
                tails = "".join(log_tail(self.log_dir / f"{name}.log", 12) for name in dead)
                raise RuntimeError(f"{', '.join(dead)} exited{tails}")
            pending = [w for w in pending if not ((w.health() or {}).get("status") == "ok")]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"tagger workers not ready after {timeout_s:.0f}s")
            if pending:
                time.sleep(0.5)

    def sink_health(self, timeout_s: float = 1.0) -> dict | None:
        """The sink's /health answer (its body also on 503), None while it does not answer."""
        if self.sink is None or not self.sink.alive:
            return None
        return _get_json(f"http://127.0.0.1:{self.sink_port}/health", timeout_s)

    def worker_health(self, timeout_s: float = 1.0) -> list[dict | None]:
        return [w.health(timeout_s) if w.alive else None for w in self.workers]

    def tagger_metrics(self) -> list[dict]:
        return [m for m in (w.metrics(1.0) for w in self.workers if w.alive) if m]


class StoredProbe:
    """Which of a set of tweet ids have reached PostgreSQL, and when."""

    def __init__(self, database_url: str, schema: str = "public") -> None:
        from sink.db import make_engine
        from sink.settings import SinkSettings

        self.engine = make_engine(SinkSettings.from_env(database_url=database_url,
                                                        database_schema=schema))
        self._pending: set[str] = set()
        self._expected: set[str] = set()
        self.stored = 0

    def expect(self, ids: Iterable[str]) -> None:
        """Adds ids to wait for; ids already expected (stored or not) are not counted twice."""
        new = set(ids) - self._expected
        self._expected |= new
        self._pending |= new

    @property
    def pending(self) -> int:
        return len(self._pending)

    def poll(self) -> int:
        """Checks pending ids; returns how many are stored so far."""
        from sqlalchemy import text

        if not self._pending:
            return self.stored
        ids = list(self._pending)
        found: list[str] = []
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 5000):
                found += conn.execute(text("SELECT id FROM tweets WHERE id = ANY(:ids)"),
                                      {"ids": ids[i:i + 5000]}).scalars().all()
        self._pending.difference_update(found)
        self.stored += len(found)
        return self.stored

    def latencies_ms(self, ids: Sequence[str]) -> list[float]:
        """Produce (``ingested_at``) to stored (``stored_at``) per tweet, in ms."""
        from sqlalchemy import text

        out: list[float] = []
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 5000):
                out += conn.execute(text(
                    "SELECT extract(epoch FROM stored_at - ingested_at) * 1000 FROM tweets "
                    "WHERE id = ANY(:ids) AND ingested_at IS NOT NULL"),
                    {"ids": list(ids[i:i + 5000])}).scalars().all()
        return [float(x) for x in out]

    def span_s(self, ids: Sequence[str]) -> float:
        """First produce to last store of ``ids``."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT extract(epoch FROM max(stored_at) - min(ingested_at)) FROM tweets "
                "WHERE id = ANY(:ids)"), {"ids": list(ids)}).scalar()
        return float(row or 0.0)

    def stage_finish_s(self, ids: Sequence[str]) -> dict[str, float]:
        """Seconds from the first produce of ``ids`` to the last one each stage finished: which
        stage a saturated run waited for (its figure is close to the pipeline's span)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT extract(epoch FROM max(ingested_at) - min(ingested_at)), "
                "extract(epoch FROM max(tagged_at) - min(ingested_at)), "
                "extract(epoch FROM max(stored_at) - min(ingested_at)) FROM tweets "
                "WHERE id = ANY(:ids)"), {"ids": list(ids)}).one()
        return {stage: round(float(v or 0.0), 2) for stage, v in zip(("ingest", "tagger", "sink"), row)}

    def top(self, limit: int = 10) -> list:
        """Top entities of the 15 minutes up to the newest trend bucket (not up to now, so archives
        with old timestamps show something too)."""
        from datetime import timedelta

        from sqlalchemy import text

        from sink import trends

        with self.engine.connect() as conn:
            newest = conn.execute(text("SELECT max(bucket_start) FROM trend_minute")).scalar()
            if newest is None:
                return []
            return trends.top_entities(conn, timedelta(minutes=15), None, limit, newest)

    def close(self) -> None:
        self.engine.dispose()


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def start_stack(state_dir: str | os.PathLike | None) -> Stack:
    stack = Stack.from_env(state_dir)
    stack.start()
    return stack
