from __future__ import annotations

import json
from datetime import timedelta

from sink import trends
from sink.cli import parse_duration
from sink.store import TrendStore
from tests.sink.streams import ago, tagged
import argparse

from sink.cli import add_bench_commands, add_commands


def main(argv: list[str]) -> int:
    """The `tweetner` dispatch with only the sink's commands registered: the full CLI imports
    every package's command module, and some of those pull in torch (seconds per test run)."""
    parser = argparse.ArgumentParser(prog="tweetner")
    sub = parser.add_subparsers(dest="command")
    add_commands(sub)
    add_bench_commands(sub.add_parser("bench").add_subparsers(dest="bench_command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def _env(monkeypatch, settings):
    monkeypatch.setenv("DATABASE_SCHEMA", settings.database_schema)
    monkeypatch.setenv("REDIS_PREFIX", settings.redis_prefix)


def test_parse_duration():
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("30") == timedelta(minutes=30)


def test_init_db_is_idempotent(engine, settings, monkeypatch, capsys):
    _env(monkeypatch, settings)
    assert main(["sink", "init-db"]) == 0
    assert main(["sink", "init-db"]) == 0
    assert "ready" in capsys.readouterr().out


def test_trends_json_and_table(engine, settings, redis_client, monkeypatch, capsys):
    _env(monkeypatch, settings)
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    TrendStore(engine).write([tagged(f"c{i}", ago(now, i % 3), [("Paris", "location")])
                              for i in range(6)]
                             + [tagged("d", ago(now, 1), [("#TaylorSwift", "person")])])
    assert main(["trends", "--json", "--window", "15m"]) == 0
    got = json.loads(capsys.readouterr().out)
    with engine.connect() as conn:
        sql = trends.top_entities(conn, timedelta(minutes=15))
    assert got == [r.to_dict() for r in sql]
    assert got[0] == {"entity": "paris", "label": "location", "count": 6, "score": 6.0}
    assert main(["trends", "--label", "person", "--no-cache"]) == 0
    table = capsys.readouterr().out
    assert "taylor swift" in table and "paris" not in table
    assert main(["trends", "--trending", "--json"]) == 0
    assert [r["entity"] for r in json.loads(capsys.readouterr().out)] == ["paris"]
