"""The `tweetner` command: one entry point, each package registers its own subcommands.

Each package exposes ``add_commands(subparsers)`` and ``add_bench_commands(subparsers)`` in its
``cli`` module; handlers are set with ``parser.set_defaults(func=...)`` and receive the parsed
namespace, returning an exit code. Heavy imports (torch, faust) happen inside handlers so that
``tweetner --help`` stays fast.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import ingest.cli
import sink.cli
import tagger.cli
import tweetner.doctor
import tweetner.replay.cli
import tweetner.stack_cli
from contracts.settings import SettingsError

# Modules that contribute commands, in help order.
_COMMAND_MODULES = (tweetner.stack_cli, ingest.cli, tagger.cli, sink.cli, tweetner.replay.cli,
                    tweetner.doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tweetner",
        description="Streaming named-entity tagging of tweets into SQL-queryable trends.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="benchmarks (tagger, pipeline, trends)")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="WHAT")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    for module in _COMMAND_MODULES:
        if hasattr(module, "add_commands"):
            module.add_commands(sub)
        if hasattr(module, "add_bench_commands"):
            module.add_bench_commands(bench_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # No hub downloads, ever: every model is local.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tweetner {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
