"""`tweetner bench pipeline`: the model alone vs the whole pipeline on the same machine.

1. tagger only: the worker's model, in this process, over the same tweets in the worker's batch
   size (``tagger_tweets_per_second``);
2. pipeline, saturated: all tweets produced at once through ingest -> Kafka -> tagger worker(s)
   -> sink -> PostgreSQL; throughput is tweets / (last ``stored_at`` - first ``ingested_at``);
3. pipeline, steady: a paced stream at half the saturated rate, whose produce->stored latencies
   give ``latency_p50_ms``/``latency_p95_ms`` (under saturation latency only measures the queue;
   those figures are reported as ``saturated_latency_*``).
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

log = logging.getLogger(__name__)


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


class _PipelineRun:
    """Produces tweets under fresh ids and waits for them in PostgreSQL, until one deadline."""

    def __init__(self, env: dict[str, str], procs, timeout_s: float, token: str) -> None:
        from ingest.service import IngestService
        from ingest.settings import IngestSettings
        from tweetner.runner import StoredProbe

        self.procs = procs
        self.token = token
        self.probe = StoredProbe(env["DATABASE_URL"], env["DATABASE_SCHEMA"])
        self.ingest = IngestService(IngestSettings.from_env(env))
        self.ingest.start()
        self.deadline = time.monotonic() + timeout_s
        self._pushes = 0

    def push(self, batch, rate: float | None = None) -> list[str]:
        ids = [f"bench-{self.token}-{self._pushes}-{i}" for i in range(len(batch))]
        self._pushes += 1
        stamped = [t.model_copy(update={"id": i}) for t, i in zip(batch, ids)]
        threading.Thread(target=self.ingest.produce_tweets, args=(stamped,), kwargs={"rate": rate},
                         daemon=True).start()
        return ids

    def wait_stored(self, ids: list[str]) -> int:
        """Waits for ``ids`` (until the deadline); returns how many of them are stored."""
        before = self.probe.stored
        self.probe.expect(ids)
        while self.probe.pending and time.monotonic() < self.deadline:
            dead = self.procs.check_alive()
            if dead:
                raise RuntimeError(f"{dead} exited; logs in {self.procs.log_dir}")
            time.sleep(0.2)
            self.probe.poll()
        return self.probe.stored - before

    def close(self) -> None:
        self.ingest.stop()
        self.probe.close()


def _measure(run: _PipelineRun, tweets: list, tagger_tps: float, warm_n: int) -> dict:
    """Warm-up, then the saturated and the steady phase (see the module docstring)."""
    from tweetner.runner import percentile

    n = len(tweets)
    run.wait_stored(run.push(tweets[:warm_n]))
    print("pipeline warm; saturating ...", flush=True)
    ids = run.push(tweets)
    stored_a = run.wait_stored(ids)
    span = run.probe.span_s(ids)
    pipeline_tps = stored_a / span if span > 0 else 0.0
    sat = run.probe.latencies_ms(ids)
    print(f"pipeline saturated: {stored_a}/{n} stored in {span:.1f}s = {pipeline_tps:.1f} "
          f"tweets/s ({100 * pipeline_tps / tagger_tps:.0f}% of tagger only)", flush=True)

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
        "stored_tweets": stored_a + stored_b,
        "lost_tweets": n + steady_n - stored_a - stored_b,
    }


def run_bench_pipeline(args: argparse.Namespace) -> int:
    from contracts.settings import StageSettings
    from contracts.topics import ensure_topics
    from tagger.worker.settings import AgentSettings
    from tweetner.runner import PipelineProcesses
    from tweetner.stack import Stack

    overrides = {"batch_size": args.batch_size} if args.batch_size else {}
    agent_settings = AgentSettings.from_env(**overrides)
    tweets = _load_tweets(args.input, args.limit)
    if not tweets:
        print("no tweets to benchmark", file=sys.stderr)
        return 1
    print(f"tweets: {len(tweets)} ({'synthetic' if not args.input else ', '.join(args.input)}); "
          f"batch size {agent_settings.batch_size}; workers {args.workers}", flush=True)

    tagger_tps, model_name = _tagger_only(agent_settings, [t.text for t in tweets])
    print(f"tagger only ({model_name}): {tagger_tps:.1f} tweets/s", flush=True)

    own_state = args.state_dir is None
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="bench-", dir=_state_root()))
    stack = Stack.from_env(state_dir)
    token = secrets.token_hex(3)
    procs = None
    run = None
    result: dict = {}
    try:
        stack.start(create_topics=False)
        env = {**stack.env(), **_isolated_env(agent_settings.batch_size, token)}
        ensure_topics(env["KAFKA_BOOTSTRAP"], StageSettings.from_env(env).topics.all())
        procs = PipelineProcesses(env, state_dir / "logs", workers=args.workers)
        procs.start()
        procs.wait_ready(timeout_s=min(args.timeout, 300))
        run = _PipelineRun(env, procs, args.timeout, token)
        measured = _measure(run, tweets, tagger_tps, warm_n=max(2 * agent_settings.batch_size, 50))
        metrics = procs.tagger_metrics()
        result = {
            "tweets": len(tweets),
            "workers": args.workers,
            "batch_size": agent_settings.batch_size,
            "model": model_name,
            "tagger_tweets_per_second": round(tagger_tps, 2),
            **measured,
            "tagger_batch_size_avg": round(sum(m.get("batch_size_avg", 0) for m in metrics)
                                           / max(len(metrics), 1), 1),
        }
    finally:
        if run is not None:
            run.close()
        if procs is not None:
            procs.stop()
        stack.stop()
        if own_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result.get("lost_tweets") == 0 else 1


def _state_root() -> str:
    root = os.environ.get("TWEETNER_STATE_DIR", ".state")
    os.makedirs(root, exist_ok=True)
    return root
