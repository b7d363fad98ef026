"""Fixtures for the pipeline tests: real servers, isolated per session and per test.

* a Tansu broker on a free port for the session (each test gets its own topic names and groups);
* a PostgreSQL schema on the machine's server (127.0.0.1:5432, db ``test``) for the session,
  emptied before each test that asks for ``pipeline_env``;
* a Redis key prefix on the machine's server (127.0.0.1:6379), fresh per test;
* the tiny random span-marker model, built once.
Everything is removed at the end; child processes are stopped by the tests' own fixtures.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterator

import pytest
import redis
from sqlalchemy import Engine, text

from sink.db import make_engine
from sink.schema import create_schema
from sink.settings import SinkSettings
from tweetner.stack import TansuService

MACHINE_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MACHINE_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_TABLES = ("mentions", "tweets", "trend_minute", "trend_hour")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuService]:
    service = TansuService(tmp_path_factory.mktemp("tansu"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[tuple[str, Engine]]:
    schema = f"tweetner_pipe_{secrets.token_hex(4)}"
    settings = SinkSettings.from_env({}, database_url=MACHINE_DATABASE_URL, database_schema=schema)
    engine = make_engine(settings)
    create_schema(engine)
    yield schema, engine
    engine.dispose()
    public = make_engine(settings.with_(database_schema="public"))
    with public.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    public.dispose()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_model import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("tiny-model"),
                                labels=("person", "geo-loc", "company"), seed=0))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"tweetner_pipe_{secrets.token_hex(4)}:"
    yield prefix
    client = redis.Redis.from_url(MACHINE_REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def pipeline_env(broker: TansuService, pg_schema: tuple[str, Engine], redis_prefix: str,
                 tiny_model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for ingest, tagger and sink processes of one test (fresh topics and tables)."""
    schema, engine = pg_schema
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} CASCADE"))
    token = secrets.token_hex(3)
    return {
        "KAFKA_BOOTSTRAP": broker.url,
        "DATABASE_URL": MACHINE_DATABASE_URL,
        "DATABASE_SCHEMA": schema,
        "REDIS_URL": MACHINE_REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
        "TWEETS_TOPIC": f"tweets-{token}",
        "TAGGED_TOPIC": f"tagged-{token}",
        "DEADLETTER_TOPIC": f"dead-{token}",
        "TOPIC_PARTITIONS": "4",
        "TAGGER_GROUP": f"tagger-{token}",
        "SINK_GROUP": f"sink-{token}",
        "TAGGER_MODEL_DIR": str(tiny_model_dir),
        "TAGGER_DEVICE": "cpu",
        "TAGGER_PRECISION": "fp32",
        "TAGGER_BATCH_SIZE": "32",
        "TAGGER_BATCH_WITHIN_S": "0.1",
        "TAGGER_SESSION_TIMEOUT_S": "6",
        "TAGGER_DATA_DIR": str(tmp_path / "tagger"),
        "SINK_FLUSH_INTERVAL_S": "0.2",
        "SINK_BATCH_SIZE": "200",
        "SINK_RETRY_INITIAL_S": "0.1",
        "SINK_RETRY_MAX_S": "1.0",
        # Two cores are shared by broker, workers and sink: one torch thread each is faster.
        "TAGGER_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
