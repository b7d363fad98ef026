"""`tweetner bench pipeline`: the model alone vs the whole pipeline on the same machine.

1. tagger only: the worker's model, in this process, over the same tweets in the worker's batch
   size (``tagger_tweets_per_second``);
2. pipeline, saturated: all tweets produced at once through ingest -> Kafka -> tagger worker(s)
   -> sink -> PostgreSQL; throughput is tweets / (last ``stored_at`` - first ``ingested_at``).
   The CPU time each stage's processes used meanwhile (from /proc/<pid>/stat) is reported per
   1,000 stored tweets, so the stage that costs the most is named, not guessed;
3. pipeline, steady: a paced stream at half the saturated rate, whose produce->stored latencies
   give ``latency_p50_ms``/``latency_p95_ms`` (under saturation latency only measures the queue;
   those figures are reported as ``saturated_latency_*``);
4. checks, by id against PostgreSQL: every produced tweet stored (``lost_tweets``), no tweet or
   mention row twice (``duplicate_rows``), trend buckets equal to the current mentions
   (``trend_count_mismatch``) and, with ``--stand-in``, exactly the mentions the stand-in finds.

``--stand-in`` runs the workers with :mod:`tagger.stand_in` (a regex for a model), which leaves
the pipeline's own cost; ``--workers 1 2`` measures each worker count in turn on one stack.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

log = logging.getLogger(__name__)

STAND_IN_FACTORY = "tagger.stand_in:load"


def _load_tweets(inputs: list[str] | None, limit: int):
    from ingest.records import parse_record
    from ingest.settings import IngestSettings
    from ingest.sources import read_sources
    from contracts.messages import Tweet
    from ingest.synthetic import SyntheticStream

    if not inputs:
        return list(SyntheticStream(seed=7).tweets(limit))
    settings = IngestSettings.from_env()
    out = []
    for raw in read_sources(inputs):
        result = parse_record(raw, max_bytes=settings.max_record_bytes,
                              unescape_html=settings.unescape_html)
        if isinstance(result, Tweet):
            out.append(result)
            if len(out) >= limit:
                break
    return out


def _tagger_only(settings, texts: list[str]) -> tuple[float, str]:
    from tagger.worker.agent import load_model

    model = load_model(settings)
    bs = settings.batch_size
    model.predict(texts[:bs])  # warm-up: lazy init, kernels, allocator
    started = time.perf_counter()
    for i in range(0, len(texts), bs):
        model.predict(texts[i:i + bs])
    elapsed = time.perf_counter() - started
    name = f"{model.model_name} {model.model_version}"
    del model
    gc.collect()
    return len(texts) / elapsed, name


def _isolated_env(batch_size: int, token: str) -> dict[str, str]:
    """Topics and groups of this run alone, so a benchmark never reads another run's records."""
    from contracts.settings import StageSettings

    topics = StageSettings.from_env().topics
    return {
        "TWEETS_TOPIC": f"{topics.tweets}-bench-{token}",
        "TAGGED_TOPIC": f"{topics.tagged}-bench-{token}",
        "DEADLETTER_TOPIC": f"{topics.deadletter}-bench-{token}",
        "TAGGER_GROUP": f"tweetner-tagger-bench-{token}",
        "SINK_GROUP": f"tweetner-sink-bench-{token}",
        "TAGGER_BATCH_SIZE": str(batch_size),
        "SINK_FLUSH_INTERVAL_S": os.environ.get("SINK_FLUSH_INTERVAL_S", "0.2"),
    }


# CPU accounting ---------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on: the command name may hold spaces."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()


def process_cpu_s(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of a process (all its threads); with ``reaped_children``, also
    of its children that exited and were waited for. 0.0 when it is gone."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def tree_cpu_s(root: int) -> float:
    """A server that forks a process per connection (PostgreSQL): the root, its live children
    and the children it reaped."""
    total = process_cpu_s(root, reaped_children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[1] == str(root):
                total += process_cpu_s(int(entry))
    return total


def _postgres_pid(database_url: str, schema: str) -> int | None:
    """The postmaster of the database the sink writes to, when it runs on this machine: the
    parent of our own backend."""
    from sqlalchemy import text

    from sink.db import make_engine
    from sink.settings import SinkSettings

    engine = make_engine(SinkSettings.from_env(database_url=database_url, database_schema=schema))
    try:
        with engine.connect() as conn:
            backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            fields = _stat(backend)  # while connected: the backend exits with the connection
    finally:
        engine.dispose()
    return int(fields[1]) if fields is not None else None


class StageCpu:
    """CPU seconds per stage between :meth:`start` and :meth:`stop`.

    Ingest runs in this process (so the benchmark knows which ids it produced): its share is
    the process's CPU less the main thread's, which only polls PostgreSQL for the ids.
    """

    def __init__(self, probes: Mapping[str, Callable[[], float]]) -> None:
        self.probes = dict(probes)
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        values = {name: probe() for name, probe in self.probes.items()}
        values["ingest"] = time.process_time() - time.thread_time()
        return values

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        end = self._read()
        self.used = {name: end[name] - self._start[name] for name in end}
        return self.used

    def per_thousand(self, tweets: int) -> dict[str, float]:
        if not tweets:
            return {}
        return {name: round(1000 * s / tweets, 3) for name, s in self.used.items()}


def _stage_probes(procs, stack, env: Mapping[str, str]) -> dict[str, Callable[[], float]]:
    probes: dict[str, Callable[[], float]] = {
        "tagger": lambda: sum(process_cpu_s(w.proc.pid) for w in procs.workers if w.proc),
    }
    if procs.sink is not None and procs.sink.proc is not None:
        sink_pid = procs.sink.proc.pid
        probes["sink"] = lambda: process_cpu_s(sink_pid)
    for name, service in (("broker", stack.kafka), ("redis", stack.redis)):
        proc = getattr(service, "_proc", None)  # an embedded server is our child process
        if proc is not None:
            probes[name] = lambda pid=proc.pid: process_cpu_s(pid)
    pg = _postgres_pid(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
    if pg is not None and _stat(pg) is not None:
        probes["postgres"] = lambda: tree_cpu_s(pg)
    return probes


# one measured run ------------------------------------------------------------------------------
class _PipelineRun:
    """Produces tweets under fresh ids and waits for them in PostgreSQL, until one deadline."""

    def __init__(self, env: dict[str, str], procs, timeout_s: float, token: str) -> None:
        from contracts.heap import settle_after_start_up
        from ingest.service import IngestService
        from ingest.settings import IngestSettings
        from tweetner.runner import StoredProbe

        self.procs = procs
        self.token = token
        self.probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
        self.ingest = IngestService(IngestSettings.from_env(env))
        self.ingest.start()
        # As `tweetner ingest` does once it is connected: this process is the benchmark's ingest.
        settle_after_start_up()
        self.deadline = time.monotonic() + timeout_s
        self._pushes = 0
        self.all_ids: list[str] = []

    def push(self, batch, rate: float | None = None) -> list[str]:
        ids = [f"bench-{self.token}-{self._pushes}-{i}" for i in range(len(batch))]
        self._pushes += 1
        self.all_ids += ids
        stamped = [t.model_copy(update={"id": i}) for t, i in zip(batch, ids)]
        threading.Thread(target=self.ingest.produce_tweets, args=(stamped,), kwargs={"rate": rate},
                         daemon=True).start()
        return ids

    def _rows(self) -> int:
        from sqlalchemy import text

        with self.probe.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tweets")).scalar_one())

    def wait_stored(self, ids: list[str]) -> int:
        """Waits for ``ids`` (until the deadline); returns how many of them are stored.

        Until the table has grown by as many rows, only its row count is polled: looking up
        20,000 ids five times a second would cost PostgreSQL more than storing them does."""
        from tqdm import tqdm

        before = self.probe.stored
        self.probe.expect(ids)
        rows = self._rows()
        self.probe.poll()
        target = rows + self.probe.pending
        # On a terminal only (disable=None): a long run shows how far the sink has got.
        bar = tqdm(total=len(ids), unit=" tweets", desc="stored", file=sys.stderr, leave=False,
                   disable=None)
        first_rows = rows - (self.probe.stored - before)
        try:
            while self.probe.pending and time.monotonic() < self.deadline:
                dead = self.procs.check_alive()
                if dead:
                    raise RuntimeError(f"{dead} exited; logs in {self.procs.log_dir}")
                time.sleep(0.2)
                rows = self._rows()
                bar.update(min(len(ids), rows - first_rows) - bar.n)
                if rows >= target:
                    self.probe.poll()
                    target = rows + self.probe.pending
        finally:
            bar.close()
        return self.probe.stored - before

    def close(self) -> None:
        self.ingest.stop()
        self.probe.close()


def _consistency(probe, ids: list[str], tweets: list, stand_in: bool) -> dict:
    """Rows by id: duplicates, trend buckets vs mentions, and the stand-in's exact mentions."""
    from sqlalchemy import text

    with probe.engine.connect() as conn:
        dup_tweets = conn.execute(text(
            "SELECT count(*) - count(DISTINCT id) FROM tweets WHERE id = ANY(:ids)"),
            {"ids": ids}).scalar_one()
        mentions, distinct = conn.execute(text(
            "SELECT count(*), count(DISTINCT (tweet_id, model_version, char_start, char_end, "
            "label)) FROM mentions WHERE tweet_id = ANY(:ids)"), {"ids": ids}).one()
        # Every counted mention is one of a tweet's current version, and nothing else is counted.
        current = conn.execute(text(
            "SELECT count(*) FROM mentions m JOIN tweets t ON t.id = m.tweet_id "
            "AND t.model_version = m.model_version WHERE m.normalized <> ''")).scalar_one()
        minute = conn.execute(text("SELECT coalesce(sum(count), 0) FROM trend_minute")).scalar_one()
        hour = conn.execute(text("SELECT coalesce(sum(count), 0) FROM trend_hour")).scalar_one()
    out = {
        "duplicate_rows": int(dup_tweets) + int(mentions) - int(distinct),
        "mentions_stored": int(mentions),
        "trend_count_mismatch": abs(int(minute) - int(current)) + abs(int(hour) - int(current)),
    }
    if stand_in:
        from tagger.stand_in import mentions_of

        per_text = {t.text: len({(m.start, m.end, m.label) for m in mentions_of(t.text)})
                    for t in tweets}
        # ids were handed out in push order over prefixes of ``tweets``: bench-<token>-<push>-<i>
        expected = sum(per_text[tweets[int(i.rsplit("-", 1)[1])].text] for i in ids)
        out["mentions_expected"] = expected
    return out


def _measure(run: _PipelineRun, tweets: list, tagger_tps: float, warm_n: int,
             cpu: StageCpu) -> dict:
    """Warm-up, then the saturated and the steady phase (see the module docstring)."""
    from tweetner.runner import percentile

    n = len(tweets)
    run.wait_stored(run.push(tweets[:warm_n]))
    print("pipeline warm; saturating ...", flush=True)
    cpu.start()
    ids = run.push(tweets)
    stored_a = run.wait_stored(ids)
    cpu.stop()
    span = run.probe.span_s(ids)
    pipeline_tps = stored_a / span if span > 0 else 0.0
    sat = run.probe.latencies_ms(ids)
    finish = run.probe.stage_finish_s(ids)
    print(f"pipeline saturated: {stored_a}/{n} stored in {span:.1f}s = {pipeline_tps:.1f} "
          f"tweets/s ({100 * pipeline_tps / tagger_tps:.0f}% of tagger only)", flush=True)
    print("last tweet out of each stage after (s): " + ", ".join(f"{k} {v}" for k, v in finish.items()),
          flush=True)
    per_k = cpu.per_thousand(stored_a)
    total = sum(per_k.values())
    print("CPU seconds per 1,000 tweets: " + ", ".join(f"{k} {v:.3f}" for k, v in per_k.items())
          + f"; total {total:.3f} (at most {2000 / total if total else 0:.0f} tweets/s on 2 cores)"
          if per_k else "CPU per stage: not measured", flush=True)

    rate = max(1.0, 0.5 * pipeline_tps)
    steady_n = max(20, min(n // 2, int(rate * 20)))
    steady_ids = run.push(tweets[:steady_n], rate=rate)
    stored_b = run.wait_stored(steady_ids)
    lat = run.probe.latencies_ms(steady_ids)
    print(f"pipeline steady at {rate:.0f} tweets/s: {stored_b}/{steady_n} stored, latency "
          f"p50 {percentile(lat, 0.5):.0f} ms, p95 {percentile(lat, 0.95):.0f} ms", flush=True)
    return {
        "pipeline_tweets_per_second": round(pipeline_tps, 2),
        "pipeline_vs_tagger": round(pipeline_tps / tagger_tps, 3),
        "latency_p50_ms": round(percentile(lat, 0.5), 1),
        "latency_p95_ms": round(percentile(lat, 0.95), 1),
        "steady_rate_tweets_per_second": round(rate, 1),
        "saturated_latency_p50_ms": round(percentile(sat, 0.5), 1),
        "saturated_latency_p95_ms": round(percentile(sat, 0.95), 1),
        "saturated_stage_finish_s": finish,
        "stored_tweets": stored_a + stored_b,
        "lost_tweets": n + steady_n - stored_a - stored_b,
        "cpu_s_per_1000_tweets": per_k,
        "cpu_s_per_1000_tweets_total": round(total, 3),
    }


def _run_workers(stack, tweets: list, agent_settings, tagger_tps: float, workers: int,
                 args: argparse.Namespace, extra_env: Mapping[str, str], state_dir: Path) -> dict:
    """One measured pass with ``workers`` tagger workers on fresh topics and groups."""
    from contracts.settings import StageSettings
    from contracts.topics import ensure_topics
    from tweetner.runner import PipelineProcesses

    token = secrets.token_hex(3)
    env = {**stack.env(), **_isolated_env(agent_settings.batch_size, token), **extra_env}
    ensure_topics(env["KAFKA_BOOTSTRAP"], StageSettings.from_env(env).topics.all())
    procs = PipelineProcesses(env, state_dir / "logs" / f"workers-{workers}", workers=workers)
    run = None
    try:
        procs.start()
        procs.wait_ready(timeout_s=min(args.timeout, 300))
        run = _PipelineRun(env, procs, args.timeout, token)
        cpu = StageCpu(_stage_probes(procs, stack, env))
        measured = _measure(run, tweets, tagger_tps, max(2 * agent_settings.batch_size, 50), cpu)
        metrics = procs.tagger_metrics()
        checks = _consistency(run.probe, run.all_ids, tweets, args.stand_in)
        print("checks: " + ", ".join(f"{k} {v}" for k, v in checks.items()), flush=True)
        return {
            "workers": workers,
            **measured,
            **checks,
            "tagger_batch_size_avg": round(sum(m.get("batch_size_avg", 0) for m in metrics)
                                           / max(len(metrics), 1), 1),
            # One consumer group: the workers share the partitions, so each tags a part.
            "tagger_tweets_by_worker": [int(m.get("tweets_total", 0)) for m in metrics],
        }
    finally:
        if run is not None:
            run.close()
        procs.stop()


def _passed(run: dict) -> bool:
    return (run.get("lost_tweets") == 0 and run.get("duplicate_rows") == 0
            and run.get("trend_count_mismatch") == 0
            and run.get("mentions_expected", run.get("mentions_stored")) == run.get("mentions_stored"))


def run_bench_pipeline(args: argparse.Namespace) -> int:
    from tagger.worker.settings import AgentSettings
    from tweetner.stack import Stack

    overrides: dict = {"batch_size": args.batch_size} if args.batch_size else {}
    extra_env: dict[str, str] = {}
    if args.stand_in:
        overrides["model_factory"] = STAND_IN_FACTORY
        extra_env["TAGGER_MODEL_FACTORY"] = STAND_IN_FACTORY
    agent_settings = AgentSettings.from_env(**overrides)
    worker_counts = args.workers if isinstance(args.workers, list) else [args.workers]
    tweets = _load_tweets(args.input, args.limit)
    if not tweets:
        print("no tweets to benchmark", file=sys.stderr)
        return 1
    print(f"tweets: {len(tweets)} ({'synthetic' if not args.input else ', '.join(args.input)}); "
          f"batch size {agent_settings.batch_size}; workers {', '.join(map(str, worker_counts))}",
          flush=True)

    tagger_tps, model_name = _tagger_only(agent_settings, [t.text for t in tweets])
    print(f"tagger only ({model_name}): {tagger_tps:.1f} tweets/s", flush=True)

    own_state = args.state_dir is None
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="bench-", dir=_state_root()))
    stack = Stack.from_env(state_dir)
    runs: list[dict] = []
    try:
        stack.start(create_topics=False)
        for workers in worker_counts:
            print(f"--- {workers} tagger worker{'s' if workers > 1 else ''} ---", flush=True)
            runs.append(_run_workers(stack, tweets, agent_settings, tagger_tps, workers, args,
                                     extra_env, state_dir))
    finally:
        stack.stop()
        if own_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    result = {
        "tweets": len(tweets),
        "batch_size": agent_settings.batch_size,
        "model": model_name,
        "stand_in": bool(args.stand_in),
        "tagger_tweets_per_second": round(tagger_tps, 2),
        **runs[0],
    }
    if len(runs) > 1:
        result["pipeline_tweets_per_second_by_workers"] = {
            str(r["workers"]): r["pipeline_tweets_per_second"] for r in runs}
        result["runs"] = runs[1:]
        for key in ("lost_tweets", "duplicate_rows", "trend_count_mismatch"):
            result[key] = sum(r[key] for r in runs)
    print(json.dumps(result))
    return 0 if all(_passed(r) for r in runs) else 1


def _state_root() -> str:
    root = os.environ.get("TWEETNER_STATE_DIR", ".state")
    os.makedirs(root, exist_ok=True)
    return root
