"""`tweetner up`: the embedded stack plus every stage, with progress and a live top-entities table."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _format_top(rows: list, width: int = 30) -> str:
    if not rows:
        return "  (no entities yet)"
    lines = [f"  {'#':>2}  {'entity':<{width}} {'label':<12} {'count':>7}"]
    for i, row in enumerate(rows, 1):
        lines.append(f"  {i:>2}  {row.entity[:width]:<{width}} {row.label:<12} {row.count:>7}")
    return "\n".join(lines)


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


def run_up(args: argparse.Namespace) -> int:
    from ingest.service import BrokerUnavailable, IngestService
    from ingest.settings import IngestSettings
    from ingest.sources import read_sources
    from tweetner.runner import PipelineProcesses, StoredProbe
    from tweetner.stack import Stack, StackError
    from tweetner.synthetic import SyntheticStream

    stop = threading.Event()
    signals = {"n": 0}

    def on_signal(signum: int, _frame: object) -> None:
        signals["n"] += 1
        stop.set()
        if signals["n"] > 1:  # a second Ctrl-C: stop waiting for graceful shutdowns
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

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
    log_dir = Path(stack.state_dir) / "logs"
    procs = PipelineProcesses(env, log_dir, workers=args.workers,
                              extra_env={"SINK_FLUSH_INTERVAL_S": "0.5"})
    probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    ingest = IngestService(IngestSettings.from_env(kafka_bootstrap=env["KAFKA_BOOTSTRAP"]))
    ingest.produced_ids = []
    ingest_error: list[BaseException] = []
    ingest_done = threading.Event()

    def produce() -> None:
        try:
            ingest.start()
            if args.input:
                ingest.run(read_sources(args.input, stop=stop), rate=args.rate, limit=args.limit,
                           stop=stop)
            else:
                seed = args.seed if args.seed is not None else int(time.time())
                rate = args.rate if args.rate is not None else (None if args.limit else 200.0)
                stream = SyntheticStream(seed=seed, tweets_per_second=rate or 200.0)
                ingest.produce_tweets(stream.tweets(args.limit), rate=rate, stop=stop)
            ingest.stop()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            ingest_error.append(exc)
        finally:
            ingest_done.set()

    started = time.monotonic()
    code = 0
    try:
        procs.start()
        print(f"tagger x{args.workers} and sink starting (logs in {log_dir}/) ...", flush=True)
        procs.wait_ready()
        print("pipeline ready; ingesting" + (f" {args.limit} tweets" if args.limit else "")
              + " (Ctrl-C stops)", flush=True)
        thread = threading.Thread(target=produce, name="ingest", daemon=True)
        thread.start()
        last_print = 0.0
        seen = 0
        while not stop.is_set():
            stop.wait(0.5)
            assert ingest.produced_ids is not None
            new_ids = ingest.produced_ids[seen:]
            seen += len(new_ids)
            probe.expect(new_ids)
            stored = probe.poll()
            dead = procs.check_alive()
            if dead:
                print(f"tweetner up: {', '.join(dead)} exited unexpectedly; see {log_dir}/",
                      file=sys.stderr)
                for name in dead:
                    tail = (log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-12:]
                    print(f"--- last lines of {name}.log:\n" + "\n".join(tail), file=sys.stderr)
                code = 1
                break
            if ingest_error:
                print(f"tweetner up: ingest failed: {ingest_error[0]}", file=sys.stderr)
                code = 1
                break
            metrics = procs.tagger_metrics()
            tagged_dead = sum(m.get("dead_letters_total", 0) for m in metrics)
            # Done when every produced tweet is stored (or was dead-lettered by the tagger).
            finished = (ingest_done.is_set() and probe.pending <= tagged_dead) or (
                args.limit is not None and stored >= args.limit)
            if time.monotonic() - last_print >= args.refresh or finished:
                last_print = time.monotonic()
                rate = sum(m.get("tweets_per_second", 0.0) for m in metrics)
                lag = sum(m.get("consumer_lag_total", 0) for m in metrics)
                s = ingest.summary
                print(f"\n[{time.monotonic() - started:6.1f}s] produced {s.produced}  "
                      f"rejected {s.rejected}  stored {stored}  tagger {rate:.0f} tweets/s  "
                      f"lag {lag}  tagger dead letters {tagged_dead}")
                print(_format_top(probe.top(args.top)), flush=True)
            if args.limit is not None and finished:
                break
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError, BrokerUnavailable) as exc:
        print(f"tweetner up: fatal: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop.set()
        print("\nstopping ...", flush=True)
        ingest_done.wait(10)
        if code == 0 and args.drain > 0:
            # Tansu keeps topics in memory: what is not stored before the broker stops is gone,
            # so give the tagger and the sink a moment to finish what was produced.
            _drain(probe, ingest.produced_ids or [], procs, args.drain)
        procs.stop()
        stored = probe.poll()
        elapsed = time.monotonic() - started
        s = ingest.summary
        print(f"summary: produced {s.produced}, rejected at ingest {s.rejected}, stored "
              f"{stored} tweets in {elapsed:.1f}s ({stored / elapsed if elapsed else 0:.1f} "
              f"tweets/s); top entities:")
        print(_format_top(probe.top(args.top)))
        probe.close()
        stack.stop()
    return code
