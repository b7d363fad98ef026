"""`tweetner sink`, `tweetner trends` and `tweetner bench trends`."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from datetime import timedelta
from typing import Any

from contracts import durations
from contracts.heap import settle_after_start_up

log = logging.getLogger(__name__)


def parse_duration(value: str) -> timedelta:
    """"15m", "1h", "90s", "2d"; a bare number means minutes."""
    duration = durations.parse_duration(value)
    if duration is None:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (try 15m, 1h, 2d)")
    return duration


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {number})")
    return number


def add_commands(subparsers: Any) -> None:
    sink = subparsers.add_parser(
        "sink", help="store tagged tweets in PostgreSQL/Redis (consumer service)",
        description="Without a subcommand: run the sink service (configured by DATABASE_URL, "
                    "DATABASE_SCHEMA, REDIS_URL, REDIS_PREFIX, KAFKA_BOOTSTRAP, TAGGED_TOPIC, "
                    "DEADLETTER_TOPIC, SINK_GROUP, ...); SINK_HTTP_PORT serves /metrics and /health.")
    sink.add_argument("--init-db", action="store_true",
                      help="create/migrate the schema before consuming")
    sink.set_defaults(func=_run_sink)
    sink_sub = sink.add_subparsers(dest="sink_command", metavar="ACTION")
    sink_sub.add_parser("run", help="run the consumer service (default)").set_defaults(func=_run_sink)
    sink_sub.add_parser("init-db", help="create or migrate tables, views and functions "
                                        "(idempotent)").set_defaults(func=_init_db)
    sink_sub.add_parser("prune", help="apply retention settings").set_defaults(func=_prune)
    sink_sub.add_parser("resync-cache", help="rebuild the Redis live trend sets from "
                                             "PostgreSQL").set_defaults(func=_resync)

    trends = subparsers.add_parser("trends", help="top or trending entities")
    trends.add_argument("--window", type=parse_duration, default=timedelta(minutes=15),
                        help="window ending now (default 15m)")
    trends.add_argument("--label", default=None, help="only this entity label (e.g. person)")
    trends.add_argument("--trending", action="store_true",
                        help="rank by how unusual the window is vs the entity's baseline")
    trends.add_argument("--limit", type=positive_int, default=20, help="rows (default 20)")
    trends.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    trends.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                        help="refresh every SECONDS until Ctrl-C")
    trends.add_argument("--no-cache", action="store_true", help="ask PostgreSQL directly")
    trends.set_defaults(func=_trends)


def add_bench_commands(bench_subparsers: Any) -> None:
    b = bench_subparsers.add_parser("trends", help="trend query latency, PostgreSQL vs Redis")
    b.add_argument("--rows", type=int, default=10_000_000, help="mention rows to generate")
    b.add_argument("--iterations", type=int, default=200, help="timed runs per query")
    b.add_argument("--keep", action="store_true", help="keep the scratch schema afterwards")
    b.set_defaults(func=_bench)


def _settings() -> Any:
    from sink.settings import SinkSettings

    return SinkSettings.from_env()


def _init_db(args: argparse.Namespace) -> int:
    from sink.db import make_engine
    from sink.schema import create_schema

    settings = _settings()
    create_schema(make_engine(settings))
    print(f"schema {settings.database_schema!r} ready")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from sink.db import make_engine
    from sink.retention import prune

    print(prune(make_engine(_settings()), _settings()))
    return 0


def _resync(args: argparse.Namespace) -> int:
    from sink.cache import TrendCache
    from sink.db import make_engine

    settings = _settings()
    return 0 if TrendCache(settings, make_engine(settings)).resync() else 1


def _run_sink(args: argparse.Namespace) -> int:
    from sink.consumer import SinkService
    from sink.http import sink_http_server

    if getattr(args, "init_db", False):
        _init_db(args)
    service = SinkService(_settings())
    http = sink_http_server(service)
    if http is not None:
        if problem := http.start_or_explain("SINK_HTTP_PORT"):
            print(f"tweetner sink: {problem}", file=sys.stderr)
            return 1
        print(f"sink: /metrics and /health on {http.url}", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: service.stop())
    settle_after_start_up()
    try:
        stats = service.run()
    finally:
        if http is not None:
            http.stop()
    log.info("sink stopped: %s", stats)
    return 0


def _trends(args: argparse.Namespace) -> int:
    from sink import trends as q
    from sink.cache import TrendCache
    from sink.db import make_engine

    settings = _settings()
    engine = make_engine(settings)
    cache = None if args.no_cache else TrendCache(settings, engine)

    def fetch() -> list[Any]:
        if cache is not None:
            ask = cache.trending if args.trending else cache.top
            return ask(args.window, args.label, args.limit)
        with engine.connect() as conn:
            ask = q.trending_entities if args.trending else q.top_entities
            return ask(conn, args.window, args.label, args.limit)

    while True:
        rows = fetch()
        if args.json:
            print(json.dumps([r.to_dict() for r in rows]), flush=True)
        else:
            if args.watch:
                sys.stdout.write("\x1b[2J\x1b[H")  # clear the screen between refreshes
            kind = "trending" if args.trending else "top"
            print(f"{kind} entities, last {args.window}"
                  + (f", label {args.label}" if args.label else ""))
            print(q.format_table(rows), flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)


def _bench(args: argparse.Namespace) -> int:
    from sink.bench import run_trends_bench

    result = run_trends_bench(_settings(), rows=args.rows, iterations=args.iterations,
                              keep=args.keep)
    print(json.dumps(result))
    return 0
