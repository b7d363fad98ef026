"""Commands of the pipeline: `up`, `stack`, `tagger` (alias `worker`) and `bench pipeline`."""
from __future__ import annotations

import argparse
import logging
import sys

from sink.cli import positive_int

log = logging.getLogger(__name__)


def _quiet_clients() -> None:
    from contracts.logs import quiet_clients

    quiet_clients()
    # kafka-python warns when one of its own event-loop tasks runs over 100 ms, which a busy
    # 2-core machine makes routine; it is not something a user can act on.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)


def add_commands(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up", help="run the whole pipeline on the embedded stack (Kafka, PostgreSQL, Redis)",
        description="Start Tansu, PostgreSQL and Redis under the state dir (unless KAFKA_BOOTSTRAP, "
                    "DATABASE_URL, REDIS_URL point elsewhere), then ingest + tagger + sink over "
                    "--input (default: the synthetic stream), with progress and a live "
                    "top-entities table. Ctrl-C stops everything.")
    up.add_argument("--input", nargs="*", default=None,
                    help="files or directories to ingest (default: the synthetic stream)")
    up.add_argument("--limit", type=int, default=None,
                    help="stop after N tweets are stored and print a summary")
    up.add_argument("--rate", type=float, default=None, help="ingest rate, tweets/s")
    up.add_argument("--seed", type=int, default=None,
                    help="synthetic stream seed (default: new per run, so each run adds tweets)")
    up.add_argument("--workers", type=positive_int, default=None,
                    help="tagger workers in one consumer group (default: 2 on a CPU with two or "
                         "more cores, 1 when the model runs on a GPU)")
    up.add_argument("--state-dir", default=None, help="where embedded servers keep data (.state)")
    up.add_argument("--refresh", type=float, default=2.0, help="seconds between table refreshes")
    up.add_argument("--top", type=int, default=10, help="rows of the top-entities table")
    up.add_argument("--drain", type=float, default=15.0,
                    help="on Ctrl-C, wait up to this many seconds for produced tweets to be stored")
    up.add_argument("--dashboard-port", type=int, default=None,
                    help="port of the dashboard and HTTP API (default 8700, or a free one if "
                         "taken; TWEETNER_API_PORT)")
    up.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")
    up.set_defaults(func=run_up)

    stack = sub.add_parser("stack", help="start only the embedded servers and print their URLs")
    stack.add_argument("--state-dir", default=None)
    stack.set_defaults(func=run_stack)

    tagger = sub.add_parser(
        "tagger", aliases=["worker"], help="run a Faust tagger worker (tweets -> tagged topic)",
        description="Consume the tweets topic in micro-batches, tag them with the model and produce "
                    "to the tagged topic (bad records to the dead-letter topic). Configured by "
                    "KAFKA_BOOTSTRAP, TAGGER_* (see docs/pipeline.md); on "
                    "http://TAGGER_WEB_HOST:TAGGER_WEB_PORT: /health, /metrics (Prometheus) "
                    "and /metrics.json.")
    tagger.add_argument("--batch-size", type=int, default=None, help="max tweets per batch")
    tagger.add_argument("--within", type=float, default=None, help="max seconds to fill a batch")
    tagger.add_argument("--model-dir", default=None, help="model directory (default: shipped)")
    tagger.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    tagger.add_argument("--precision", default=None, help="fp32, fp16, bf16")
    tagger.add_argument("--web-port", type=int, default=None, help="health/metrics port")
    tagger.set_defaults(func=run_tagger)


def add_bench_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "pipeline", help="end-to-end tweets/s and produce->PostgreSQL latency vs tagger-only",
        description="Measure the model alone (tagger_tweets_per_second), then the whole pipeline "
                    "on the embedded stack; the last line is one JSON object.")
    bench.add_argument("--input", nargs="*", default=None,
                       help="files or directories (default: the synthetic stream)")
    bench.add_argument("--limit", type=int, default=2000, help="tweets to push through")
    bench.add_argument("--batch-size", type=int, default=None, help="tagger batch size")
    bench.add_argument("--workers", type=positive_int, nargs="+", default=[1],
                       help="tagger workers; several counts (--workers 1 2) are measured in turn")
    bench.add_argument("--stand-in", action="store_true",
                       help="a model that costs nothing (tagger.stand_in): the pipeline's own cost")
    bench.add_argument("--state-dir", default=None)
    bench.add_argument("--timeout", type=float, default=600.0, help="give up after this many s")
    bench.set_defaults(func=run_bench_pipeline)


def run_tagger(args: argparse.Namespace) -> int:
    _quiet_clients()
    from tagger.worker.agent import load_model
    from tagger.worker.settings import AgentSettings
    from tagger.worker.app import run_worker
    from contracts.topics import ensure_topics

    overrides = {k: v for k, v in {
        "batch_size": args.batch_size, "batch_within_s": args.within, "model_dir": args.model_dir,
        "device": args.device, "precision": args.precision, "web_port": args.web_port,
    }.items() if v is not None}
    settings = AgentSettings.from_env(**overrides)
    try:
        ensure_topics(settings.kafka_bootstrap, settings.topics.all(), timeout_s=30)
    except Exception as exc:  # noqa: BLE001 - any broker failure here is fatal and explained
        print(f"tweetner tagger: fatal: Kafka at {settings.kafka_bootstrap} is unreachable: {exc}",
              file=sys.stderr)
        return 1
    try:
        model = load_model(settings)
    except Exception as exc:  # noqa: BLE001 - a worker without a model cannot start; say why
        print(f"tweetner tagger: fatal: cannot load the model ({settings.model_factory}, "
              f"model_dir={settings.model_dir or 'default'}): {exc}", file=sys.stderr)
        return 1
    log.info("model %s %s; batches of %d within %.2fs; group %s", model.model_name,
             model.model_version, settings.batch_size, settings.batch_within_s, settings.group)
    level = "debug" if logging.getLogger().level <= logging.DEBUG else "info"
    return run_worker(settings, model, loglevel=level)


def run_stack(args: argparse.Namespace) -> int:
    _quiet_clients()
    import signal
    import threading

    from tweetner.stack import Stack

    stack = Stack.from_env(args.state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack.start()
    try:
        for key, value in stack.env().items():
            print(f"export {key}={value}")
        print(f"# also in {stack.state_dir}/stack.json (mode 0600); `tweetner trends`, `sink` and "
              "`replay` run here find it without these variables")
        print("# stack running; Ctrl-C stops it", flush=True)
        stop.wait()
    finally:
        stack.stop()
    return 0


def run_up(args: argparse.Namespace) -> int:
    _quiet_clients()
    from tweetner.up import run_up as _run_up

    return _run_up(args)


def run_bench_pipeline(args: argparse.Namespace) -> int:
    _quiet_clients()
    from tweetner.bench import run_bench_pipeline as _run

    return _run(args)
