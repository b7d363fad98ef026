"""Parsing of replay times and offsets (no servers)."""
from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import pytest

from tweetner.replay import ReplayOptions
from tweetner.replay.cli import parse_offsets, parse_time

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_times():
    assert parse_time("7d", NOW) == NOW - timedelta(days=7)
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("90s", NOW) == NOW - timedelta(seconds=90)
    assert parse_time("2024-05-01T10:00") == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert parse_time("2024-05-01T10:00+02:00") == datetime(2024, 5, 1, 8, tzinfo=timezone.utc)
    assert parse_time("2024-05-01T10:00Z") == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday")


def test_offsets():
    assert parse_offsets("all") == "all"
    assert parse_offsets("0:5,2:earliest") == {0: 5, 2: None}
    for bad in ("0", "a:1", "0:1,0:2", "0:-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_offsets(bad)


def test_options_need_exactly_one_start():
    with pytest.raises(ValueError):
        ReplayOptions(topic="t")
    with pytest.raises(ValueError):
        ReplayOptions(topic="t", from_time=NOW, from_offsets="all")
    assert ReplayOptions(topic="t", resume=True).consumer_group == "tweetner-replay-t"


def test_command_errors_are_exit_codes_not_tracebacks(tmp_path, capsys):
    from tweetner.cli import main

    assert main(["replay", "--topic", "t"]) == 2
    assert "--from" in capsys.readouterr().err
    # The model loads before Kafka is touched, so a bad one fails fast without a broker.
    assert main(["replay", "--topic", "t", "--from", "1h", "--retag", "--model",
                 str(tmp_path / "missing")]) == 1
    assert "cannot load the model" in capsys.readouterr().err
