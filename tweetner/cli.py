"""The `tweetner` command: one entry point, each package registers its own subcommands.

Each package exposes ``add_commands(subparsers)`` and ``add_bench_commands(subparsers)`` in its
``cli`` module; handlers are set with ``parser.set_defaults(func=...)`` and receive the parsed
namespace, returning an exit code. Heavy imports (torch, faust) happen inside handlers so that
``tweetner --help`` stays fast.

Failures a person can fix (a server that does not answer, a missing file, a database without the
schema) end in one line, ``tweetner <command>: <cause>; <fix>``, and exit code 1; bad arguments
and bad settings exit 2. Anything else is a bug and keeps its traceback.

Commands that read the database (``trends``, ``sink``, ``replay``) run with no ``DATABASE_URL``
against the embedded stack's PostgreSQL in ``TWEETNER_STATE_DIR`` (default ``.state``), which
``tweetner up`` and ``tweetner stack`` leave there; see ``tweetner.stack.find_served_state``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib import metadata
from typing import NoReturn

import ingest.cli
import sink.cli
import tagger.cli
import tweetner.api.cli
import tweetner.doctor
import tweetner.replay.cli
import tweetner.stack_cli
from contracts.settings import SettingsError
from tweetner.stack import ServedState, StackError, find_served_state

# Modules that contribute commands, in help order.
_COMMAND_MODULES = (tweetner.stack_cli, ingest.cli, tagger.cli, sink.cli, tweetner.replay.cli,
                    tweetner.api.cli, tweetner.doctor)
# Commands that need the database, and those that only use servers a running stack offers.
_DATABASE_COMMANDS = {"trends", "sink", "replay", "dashboard"}
_STACK_CLIENT_COMMANDS = {"ingest", "tagger", "worker"}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line that says where the help is, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    try:
        return metadata.version("tweetner")
    except metadata.PackageNotFoundError:  # a checkout run without installing it
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tweetner",
        description="Streaming named-entity tagging of tweets into SQL-queryable trends.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"tweetner {_version()}")
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


def _hidden_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _database_url() -> str:
    from sink.settings import SinkSettings

    return os.environ.get("DATABASE_URL") or str(SinkSettings.model_fields["database_url"].default)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _database_failure(exc: BaseException) -> str | None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    where = _hidden_password(_database_url())
    if isinstance(exc, OperationalError):
        return (f"cannot use PostgreSQL at {where} ({_first_line(exc)}); start it or fix "
                "DATABASE_URL, or unset DATABASE_URL to use the embedded stack's database")
    # undefined_function, undefined_table: a database the schema was never created in.
    if isinstance(exc, ProgrammingError) and getattr(exc.orig, "pgcode", None) in ("42883", "42P01"):
        schema = os.environ.get("DATABASE_SCHEMA") or "public"
        return (f"the database at {where} has no tweetner tables in schema {schema!r}; create "
                "them with `tweetner sink init-db`, or unset DATABASE_URL to use the embedded "
                "stack's database")
    return None


def _kafka_failure(exc: BaseException) -> str | None:
    import kafka.errors

    # kafka-python 2.x raises NoBrokersAvailable; 3.x dropped it for KafkaConnectionError.
    unreachable = tuple(getattr(kafka.errors, name) for name in ("NoBrokersAvailable", "KafkaConnectionError")
                        if hasattr(kafka.errors, name))
    if isinstance(exc, unreachable):
        where = os.environ.get("KAFKA_BOOTSTRAP") or "127.0.0.1:9092"
        return (f"Kafka at {where} is unreachable; start a broker (`tweetner stack`) or set "
                "KAFKA_BOOTSTRAP")
    return None


def _redis_failure(exc: BaseException) -> str | None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    if isinstance(exc, RedisConnectionError):
        where = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        return f"Redis at {where} is unreachable ({_first_line(exc)}); start it or fix REDIS_URL"
    return None


def explain(exc: BaseException) -> str | None:
    """One line of cause and fix for a failure a person can act on; None for anything else.

    Only libraries already imported can have raised: the others are not imported for the check.
    """
    if isinstance(exc, StackError):
        return _first_line(exc)
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return f"{exc.strerror}: {exc.filename}" if exc.filename else _first_line(exc)
    for module, check in (("sqlalchemy", _database_failure), ("kafka", _kafka_failure),
                          ("redis", _redis_failure)):
        if module in sys.modules:
            line = check(exc)
            if line:
                return line
    return None


def _use_served_stack(args: argparse.Namespace) -> ServedState | None:
    """Points the command at the embedded stack's servers where no variable names others."""
    needs_database = args.command in _DATABASE_COMMANDS
    if not needs_database and args.command not in _STACK_CLIENT_COMMANDS:
        return None
    served = find_served_state(os.environ, needs_database=needs_database)
    os.environ.update(served.env)
    if served.started is not None and hasattr(args, "no_cache") and not os.environ.get("REDIS_URL"):
        # The stack's Redis is gone with it, and another Redis holds other live sets.
        args.no_cache = True
    return served


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
    served: ServedState | None = None
    try:
        served = _use_served_stack(args)
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"tweetner {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise  # a bug: keep the traceback
        logging.getLogger(__name__).debug("%s failed", args.command, exc_info=True)
        print(f"tweetner {args.command}: {line}", file=sys.stderr)
        return 1
    finally:
        if served is not None:
            served.stop()


if __name__ == "__main__":
    sys.exit(main())
