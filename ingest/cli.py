"""`tweetner ingest`: files, directories or stdin (or the synthetic stream) to the tweets topic."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="produce tweets from files/stdin to Kafka (dead letters for bad records)",
        description="Validate tweets from JSON Lines or plain-text files (or stdin) and produce "
                    "them to the tweets topic; rejected records go to the dead-letter topic. "
                    "Configured by KAFKA_BOOTSTRAP, TWEETS_TOPIC, DEADLETTER_TOPIC, INGEST_*; "
                    "INGEST_HTTP_PORT serves /metrics and /health while it runs.")
    p.add_argument("inputs", nargs="*", default=["-"],
                   help="files or directories ('-' or nothing = stdin)")
    p.add_argument("--format", choices=["auto", "jsonl", "text"], default="auto",
                   help="record format (auto: by suffix, else by the first line)")
    p.add_argument("--rate", type=float, default=None, help="tweets per second (replay as live)")
    p.add_argument("--follow", action="store_true", help="keep reading a growing file (tail -f)")
    p.add_argument("--limit", type=int, default=None, help="stop after producing N tweets")
    p.add_argument("--synthetic", type=int, metavar="N", default=None,
                   help="produce N tweets of the built-in synthetic stream instead of files")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
    p.add_argument("--no-create-topics", action="store_true",
                   help="do not create missing topics")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_ingest)


def run_ingest(args: argparse.Namespace) -> int:
    from contracts.logs import quiet_clients
    from ingest.metrics import ingest_http_server
    from ingest.service import IngestService
    from ingest.settings import IngestSettings

    quiet_clients()
    settings = IngestSettings.from_env()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        # First signal: finish the current record, flush, print the summary; second: abort.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    service = IngestService(settings)
    http = ingest_http_server(service)
    if http is not None and (problem := http.start_or_explain("INGEST_HTTP_PORT")):
        print(f"tweetner ingest: {problem}", file=sys.stderr)
        return 1
    try:
        return _ingest(args, settings, service, stop)
    finally:
        if http is not None:
            http.stop()


def _ingest(args: argparse.Namespace, settings: Any, service: Any, stop: threading.Event) -> int:
    from kafka.errors import KafkaError
    from tqdm import tqdm

    from contracts.heap import settle_after_start_up
    from contracts.topics import ensure_topics
    from ingest.service import BrokerUnavailable
    from ingest.sources import read_sources

    if not _answers(settings.kafka_bootstrap):
        print(f"tweetner ingest: Kafka at {settings.kafka_bootstrap} is unreachable (nothing "
              "listens there); start a broker (`tweetner stack`) or set KAFKA_BOOTSTRAP",
              file=sys.stderr)
        return 1
    try:
        if not args.no_create_topics:
            ensure_topics(settings.kafka_bootstrap, settings.topics.all(),
                          timeout_s=settings.connect_timeout_s)
        service.start()
        settle_after_start_up()
    except (BrokerUnavailable, KafkaError) as exc:
        print(f"tweetner ingest: fatal: Kafka at {settings.kafka_bootstrap} is unreachable: {exc}",
              file=sys.stderr)
        return 1

    bar = tqdm(unit=" tweets", disable=True if args.no_progress else None, file=sys.stderr,
               total=args.synthetic or args.limit)
    try:
        if args.synthetic is not None:
            from ingest.synthetic import SyntheticStream

            tweets = SyntheticStream(seed=args.seed).tweets(args.synthetic)
            summary = service.produce_tweets(_tick(tweets, bar), rate=args.rate, stop=stop,
                                             limit=args.limit)
        else:
            fmt = None if args.format == "auto" else args.format
            records = read_sources(args.inputs, fmt=fmt, follow=args.follow,
                                   poll_s=settings.follow_poll_s, stop=stop)
            last = [0, 0]

            def on_record(summary: Any) -> None:
                bar.update(summary.produced - last[0])
                last[0] = summary.produced
                if summary.rejected != last[1]:
                    last[1] = summary.rejected
                    bar.set_postfix(rejected=summary.rejected, refresh=False)

            summary = service.run(records, rate=args.rate, limit=args.limit, stop=stop,
                                  on_record=on_record)
        service.stop()
    except BrokerUnavailable as exc:
        bar.close()
        print(f"tweetner ingest: fatal: {exc}", file=sys.stderr)
        print(service.summary.line(), file=sys.stderr)
        return 1
    except OSError as exc:
        bar.close()
        print(f"tweetner ingest: fatal: {exc}", file=sys.stderr)
        return 1
    bar.close()
    print(summary.line())
    return 0


def _answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection: a quick check, so that a broker that
    is not there fails in seconds, not after the clients' 30 s of retries and warnings."""
    import socket

    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def _tick(items: Iterable[T], bar: Any) -> Iterator[T]:
    # The synthetic stream has no per-record callback; count what passes through instead.
    for item in items:
        bar.update(1)
        yield item
