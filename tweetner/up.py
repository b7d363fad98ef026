"""`tweetner up`: the embedded stack plus every stage, with progress and a live top-entities table."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

from sink.trends import format_table
from tweetner.stack import log_tail

log = logging.getLogger(__name__)


class _RunProbe:
    """A StoredProbe that tells the tweets this run stored from those an earlier run had stored
    (same ids: the writer leaves them as they were, so their ``stored_at`` predates the run)."""

    def __init__(self, database_url: str, schema: str) -> None:
        from sqlalchemy import text

        from tweetner.runner import StoredProbe

        self._probe = StoredProbe(database_url, schema)
        with self._probe.engine.connect() as conn:
            self.since = conn.execute(text("SELECT now()")).scalar()
        self.skipped = 0

    def __getattr__(self, name: str):
        return getattr(self._probe, name)

    def poll(self) -> int:
        """Stored by this run so far; ``skipped`` counts those found stored before it."""
        from sqlalchemy import text

        before = self._probe.stored
        self._probe.poll()
        if self._probe.stored > before:
            with self._probe.engine.connect() as conn:
                self.skipped = conn.execute(text(
                    "SELECT count(*) FROM tweets WHERE id = ANY(:ids) AND stored_at < :since"),
                    {"ids": list(self._probe._expected - self._probe._pending),
                     "since": self.since}).scalar() or 0
        return self._probe.stored - self.skipped

    def expect(self, ids) -> None:
        self._probe.expect(ids)

    @property
    def pending(self) -> int:
        return self._probe.pending


def _skipped_note(probe: "_RunProbe") -> str:
    return f" ({probe.skipped} already stored by an earlier run: skipped)" if probe.skipped else ""


def _drain(probe, produced_ids: list[str], procs, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        probe.expect(produced_ids)
        probe.poll()
        while probe.pending and time.monotonic() < deadline and not procs.check_alive():
            time.sleep(0.3)
            probe.poll()
    except KeyboardInterrupt:
        pass
    except Exception:  # noqa: BLE001 - draining is best effort on the way out
        log.debug("drain failed", exc_info=True)


def _stop_on_signals(stop: threading.Event) -> None:
    signals = {"n": 0}

    def on_signal(signum: int, _frame: object) -> None:
        signals["n"] += 1
        stop.set()
        if signals["n"] > 1:  # a second Ctrl-C: stop waiting for graceful shutdowns
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


class _Feeder:
    """Ingest in a thread of its own: the files given, or the synthetic stream."""

    def __init__(self, args: argparse.Namespace, bootstrap: str, stop: threading.Event) -> None:
        from ingest.service import IngestService
        from ingest.settings import IngestSettings

        self.args = args
        self.stop = stop
        self.ingest = IngestService(IngestSettings.from_env(kafka_bootstrap=bootstrap))
        self.ingest.produced_ids = []
        self.error: BaseException | None = None
        self.done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="ingest", daemon=True).start()

    def _run(self) -> None:
        from ingest.sources import read_sources
        from ingest.synthetic import SyntheticStream

        args, stop = self.args, self.stop
        try:
            self.ingest.start()
            if args.input:
                self.ingest.run(read_sources(args.input, stop=stop), rate=args.rate,
                                limit=args.limit, stop=stop)
            else:
                seed = args.seed if args.seed is not None else int(time.time())
                rate = args.rate if args.rate is not None else (None if args.limit else 200.0)
                stream = SyntheticStream(seed=seed, tweets_per_second=rate or 200.0)
                self.ingest.produce_tweets(stream.tweets(args.limit), rate=rate, stop=stop)
            self.ingest.stop()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.done.set()

    @property
    def produced_ids(self) -> list[str]:
        return self.ingest.produced_ids or []


def _watch(args: argparse.Namespace, procs, probe, feeder: _Feeder, stop: threading.Event,
           started: float) -> int:
    """Progress until the input is stored (with --limit) or Ctrl-C; the exit code."""
    from tweetner.up_status import StatusView

    view = StatusView()
    view.start()
    try:
        return _watch_loop(args, procs, probe, feeder, stop, started, view)
    finally:
        view.stop()


def _watch_loop(args: argparse.Namespace, procs, probe, feeder: _Feeder, stop: threading.Event,
                started: float, view) -> int:
    from tweetner.up_status import stage_health

    last_print = 0.0
    seen = 0
    while not stop.is_set():
        stop.wait(0.5)
        new_ids = feeder.produced_ids[seen:]
        seen += len(new_ids)
        probe.expect(new_ids)
        stored = probe.poll()
        dead = procs.check_alive()
        if dead:
            tails = "".join(log_tail(procs.log_dir / f"{name}.log", 12) for name in dead)
            print(f"tweetner up: {', '.join(dead)} exited unexpectedly{tails}", file=sys.stderr)
            return 1
        if feeder.error is not None:
            print(f"tweetner up: ingest failed: {feeder.error}", file=sys.stderr)
            return 1
        metrics = procs.tagger_metrics()
        tagged_dead = sum(m.get("dead_letters_total", 0) for m in metrics)
        # Done when every produced tweet is stored (or was dead-lettered by the tagger).
        finished = (feeder.done.is_set() and probe.pending <= tagged_dead) or (
            args.limit is not None and stored + probe.skipped >= args.limit)
        if time.monotonic() - last_print >= args.refresh or finished:
            last_print = time.monotonic()
            rate = sum(m.get("tweets_per_second", 0.0) for m in metrics)
            lag = sum(m.get("consumer_lag_total", 0) for m in metrics)
            s = feeder.ingest.summary
            view.update(f"[{time.monotonic() - started:6.1f}s] produced {s.produced}  "
                        f"rejected {s.rejected}  stored {stored}{_skipped_note(probe)}  tagger {rate:.0f} tweets/s  "
                        f"lag {lag}  tagger dead letters {tagged_dead}",
                        stage_health(procs), probe.top(args.top))
        if args.limit is not None and finished:
            break
    return 0


def _await_sink(procs, timeout_s: float = 30.0):
    """Every stage's health once the sink answers on its port (it starts beside the workers)."""
    from tweetner.up_status import stage_health

    deadline = time.monotonic() + timeout_s
    while procs.sink_health() is None and time.monotonic() < deadline and not procs.check_alive():
        time.sleep(0.3)
    return stage_health(procs)


def _start_dashboard(args: argparse.Namespace, env: dict[str, str]):
    """The dashboard and HTTP API over this stack (tweetner.api), or None with a note why not."""
    if args.no_dashboard:
        return None
    import os

    from tweetner.api.cli import serve

    full = {**os.environ, **env}
    try:
        try:
            server = serve(None, args.dashboard_port, env=full)
        except OSError:
            if args.dashboard_port is not None:
                raise
            server = serve(None, 0, env=full)  # the default port is taken: any free one
    except Exception as exc:  # noqa: BLE001 - the pipeline runs without its dashboard
        print(f"tweetner up: the dashboard did not start ({exc}); the pipeline runs without it",
              file=sys.stderr)
        return None
    print(f"  dashboard: {server.url}  (HTTP API docs: {server.url}docs)", flush=True)
    return server


def default_workers(env: Mapping[str, str]) -> int:
    """Tagger workers ``up`` starts without ``--workers``: two on a CPU of two or more cores,
    one where the model runs on a GPU (``TAGGER_DEVICE``, or, unset, an NVIDIA driver present).

    One worker's model threads meet after every operation, so whenever the sink, the broker or
    PostgreSQL holds a core the other thread waits; a second worker fills those waits (the
    shipped model on two cores: one worker 64-78% of the model's rate alone, two 12-31% more
    tweets/s than one, docs/benchmarks.md)."""
    device = env.get("TAGGER_DEVICE", "").strip().lower()
    on_gpu = device.startswith("cuda") if device else Path("/proc/driver/nvidia/version").exists()
    if on_gpu:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(2, cores)


def run_up(args: argparse.Namespace) -> int:
    from ingest.service import BrokerUnavailable
    from tweetner.runner import PipelineProcesses
    from tweetner.stack import Stack, StackError

    stop = threading.Event()
    _stop_on_signals(stop)
    stack = Stack.from_env(args.state_dir)
    print(f"starting the stack in {stack.state_dir}/ ...", flush=True)
    try:
        stack.start()
    except (StackError, OSError) as exc:
        print(f"tweetner up: fatal: could not start the stack: {exc}", file=sys.stderr)
        return 1
    env = stack.env()
    for key, value in env.items():
        print(f"  {key}={value}")
    if stack.postgres.embedded:
        where = "" if str(stack.state_dir) == ".state" else f"TWEETNER_STATE_DIR={stack.state_dir} "
        print(f"  the data stays in {stack.state_dir}/: query it afterwards with "
              f"`{where}tweetner trends` (no DATABASE_URL), or serve it with `{where}tweetner stack`")
    dashboard = _start_dashboard(args, env)
    log_dir = Path(stack.state_dir) / "logs"
    workers = args.workers if args.workers is not None else default_workers(os.environ)
    procs = PipelineProcesses(env, log_dir, workers=workers,
                              extra_env={"SINK_FLUSH_INTERVAL_S": "0.5"})
    probe = _RunProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    feeder = _Feeder(args, env["KAFKA_BOOTSTRAP"], stop)
    started = time.monotonic()
    code = 0
    try:
        procs.start()
        print(f"tagger x{workers} and sink starting (logs in {log_dir}/) ...", flush=True)
        procs.wait_ready()
        from tweetner.up_status import health_line

        print(health_line(_await_sink(procs)), flush=True)
        print("pipeline ready; ingesting" + (f" {args.limit} tweets" if args.limit else "")
              + " (Ctrl-C stops)", flush=True)
        feeder.start()
        code = _watch(args, procs, probe, feeder, stop, started)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, BrokerUnavailable) as exc:
        print(f"tweetner up: fatal: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop.set()
        print("\nstopping ...", flush=True)
        feeder.done.wait(10)
        if code == 0 and args.drain > 0:
            # Tansu keeps topics in memory: what is not stored before the broker stops is gone,
            # so give the tagger and the sink a moment to finish what was produced.
            _drain(probe, feeder.produced_ids, procs, args.drain)
        procs.stop()
        _summary(probe, feeder, started, args.top)
        probe.close()
        if dashboard is not None:
            dashboard.stop()
        stack.stop()
    return code


def _summary(probe, feeder: _Feeder, started: float, top: int) -> None:
    stored = probe.poll()
    elapsed = time.monotonic() - started
    s = feeder.ingest.summary
    print(f"summary: produced {s.produced}, rejected at ingest {s.rejected}, stored "
          f"{stored} tweets{_skipped_note(probe)} in {elapsed:.1f}s "
          f"({stored / elapsed if elapsed else 0:.1f} tweets/s); top entities:")
    print(format_table(probe.top(top)))
