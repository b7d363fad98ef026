"""`tweetner replay`: re-sink a tagged topic or re-tag a raw one (backfill) over a time/offset range."""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from datetime import datetime, timezone
from typing import Any

from contracts.durations import parse_duration

log = logging.getLogger(__name__)

def parse_time(value: str, now: datetime | None = None) -> datetime:
    """ISO-8601 ("2024-05-01T12:00", zone-less means UTC) or an age ("7d", "2h", "30m", "90s")."""
    age = parse_duration(value, default_unit=None)
    if age is not None:
        return (now or datetime.now(timezone.utc)) - age
    try:
        ts = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {value!r} (ISO-8601 like 2024-05-01T12:00Z, or an age like 7d, 2h)")
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def parse_offsets(value: str) -> dict[int, int | None] | str:
    """"all", or "P:O[,P:O...]" where O is an offset or "earliest"."""
    if value.strip().lower() == "all":
        return "all"
    out: dict[int, int | None] = {}
    for part in value.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+|earliest)\s*", part)
        if not m:
            raise argparse.ArgumentTypeError(
                f"bad offset {part!r}: use P:O[,P:O...] (O a number or 'earliest') or 'all'")
        partition = int(m.group(1))
        if partition in out:
            raise argparse.ArgumentTypeError(f"partition {partition} given twice")
        out[partition] = None if m.group(2) == "earliest" else int(m.group(2))
    return out


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay", help="re-consume a topic range: re-sink tagged records or re-tag raw tweets",
        description="Replays TOPIC from a time or offsets to an end captured at start (or --to), "
                    "storing through the sink's idempotent writer: the same model version "
                    "changes nothing, a new one replaces mentions and corrects trend counts. "
                    "Storage comes from the sink's environment (DATABASE_URL, DATABASE_SCHEMA, "
                    "REDIS_URL, REDIS_PREFIX, KAFKA_BOOTSTRAP, DEADLETTER_TOPIC).")
    p.add_argument("--topic", required=True, help="topic to replay")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_time", type=parse_time, metavar="TIME",
                       help="first record time: ISO-8601 or an age like 7d, 2h")
    start.add_argument("--from-offsets", type=parse_offsets, metavar="P:O[,P:O...]|all",
                       help="start offsets per partition (only those partitions), or 'all' "
                            "partitions from their earliest offset")
    p.add_argument("--to", dest="to_time", type=parse_time, metavar="TIME",
                   help="stop each partition at its first record newer than TIME (default: at "
                        "the end offsets captured at start)")
    p.add_argument("--retag", action="store_true",
                   help="the topic holds raw tweets: tag them with the current model and store "
                        "the result (default: it holds tagged records, store them as they are)")
    p.add_argument("--model", default=None, help="span-marker model directory for --retag "
                                                  "(default: the shipped model)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--precision", default=None, help="fp32, bf16, fp16, int8 (default: per device)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="records per model call and per PostgreSQL transaction")
    p.add_argument("--group", default=None,
                   help="consumer group for progress (default tweetner-replay-<topic>)")
    p.add_argument("--resume", action="store_true",
                   help="start partitions at the group's committed offsets (others at --from / "
                        "--from-offsets, or earliest)")
    p.add_argument("--dry-run", action="store_true",
                   help="read and validate only: no writes, dead letters or commits")
    p.add_argument("--idle-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up on partitions that stay silent this long before their end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=_replay)


def _tagger_factory(args: argparse.Namespace) -> Any:
    def load() -> Any:
        from tagger.loading import load_tagger

        threads = os.environ.get("TAGGER_TORCH_THREADS")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        return load_tagger(args.model, device=args.device, precision=args.precision)

    return load


def _replay(args: argparse.Namespace) -> int:
    from sink.settings import SinkSettings
    from contracts.logs import quiet_clients
    from tweetner.replay import ReplayError, ReplayOptions, ReplayService

    quiet_clients()
    try:
        options = ReplayOptions(
            topic=args.topic, from_time=args.from_time, from_offsets=args.from_offsets,
            to_time=args.to_time, retag=args.retag, group=args.group, resume=args.resume,
            dry_run=args.dry_run, batch_size=args.batch_size, idle_timeout_s=args.idle_timeout,
            progress=not args.no_progress)
    except ValueError as exc:
        print(f"tweetner replay: {exc} (use --from TIME, --from-offsets, or --resume)",
              file=sys.stderr)
        return 2
    service = ReplayService(options, SinkSettings.from_env(),
                            tagger_factory=_tagger_factory(args) if args.retag else None)
    # Ctrl-C finishes the batch in hand and commits it, so --resume continues exactly there.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: service.stop())
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = service.run()
    except (ReplayError, OSError) as exc:
        print(f"tweetner replay: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print(json.dumps(summary.to_dict(), default=str), flush=True)
    else:
        print(format_summary(summary), flush=True)
    return 130 if summary.interrupted else 0


def format_summary(s: Any) -> str:
    what = "dry run of " if s.dry_run else ""
    lines = [f"{what}{s.mode} replay of {s.topic} (group {s.group})"
             + (f", model {s.model_version}" if s.model_version else "")
             + (" - interrupted, continue with --resume" if s.interrupted else "")]
    lines.append(f"records read        {s.records_read}"
                 + (f" ({s.records_skipped} before --from)" if s.records_skipped else ""))
    if s.dry_run:
        lines.append(f"would store         {s.records_valid}")
    else:
        lines.append(f"tweets              inserted {s.tweets_inserted} / unchanged "
                     f"{s.tweets_unchanged} / replaced {s.tweets_replaced}")
        lines.append(f"mentions inserted   {s.mentions_inserted}")
        lines.append(f"trend buckets changed {s.trend_buckets_changed}")
    lines.append(f"dead letters        {s.dead_letters}")
    lines.append(f"seconds             {s.seconds:.1f}")
    return "\n".join(lines)
