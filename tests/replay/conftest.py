"""Fixtures for the replay tests: a Tansu broker, the machine's PostgreSQL and Redis, two tiny models.

The broker is started the same way as in tests/pipeline; PostgreSQL gets one schema per session
(tables emptied per test) and Redis one key prefix per test. The environment a test's
``tweetner replay`` reads is set with monkeypatch, so the command runs in-process.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, text

from sink.db import make_engine
from sink.schema import create_schema
from sink.settings import SinkSettings
from tweetner.stack import TansuService

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_TABLES = ("mentions", "tweets", "trend_minute", "trend_hour")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    # Two shared cores: one torch thread keeps the tiny models quick and the machine usable.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuService]:
    service = TansuService(tmp_path_factory.mktemp("tansu"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def session_engine() -> Iterator[Engine]:
    settings = SinkSettings.from_env({}, database_url=DATABASE_URL,
                                     database_schema=f"tweetner_replay_{secrets.token_hex(4)}")
    engine = make_engine(settings)
    create_schema(engine)
    yield engine
    engine.dispose()
    public = make_engine(settings.with_(database_schema="public"))
    with public.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
    public.dispose()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny random models that tag differently: "old" (tiny-0) and "new" (tiny-1)."""
    from tests.fixtures.tiny_model import make_tiny_model

    labels = ("person", "geo-loc", "company")
    return {"old": Path(make_tiny_model(tmp_path_factory.mktemp("old"), labels, seed=0,
                                        model_version="tiny-0")),
            "new": Path(make_tiny_model(tmp_path_factory.mktemp("new"), labels, seed=1,
                                        model_version="tiny-1"))}


@dataclass
class ReplayEnv:
    bootstrap: str
    engine: Engine
    redis: redis.Redis
    redis_prefix: str
    raw_topic: str
    tagged_topic: str
    deadletter_topic: str
    settings: SinkSettings


@pytest.fixture
def replay_env(broker: TansuService, session_engine: Engine,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayEnv]:
    from contracts.topics import ensure_topics

    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} CASCADE"))
    token = secrets.token_hex(3)
    env = {
        "KAFKA_BOOTSTRAP": broker.url,
        "DATABASE_URL": DATABASE_URL,
        "DATABASE_SCHEMA": _schema_of(session_engine),
        "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": f"tweetner_replay_{token}:",
        "DEADLETTER_TOPIC": f"dead-{token}",
        "TAGGER_TORCH_THREADS": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    e = ReplayEnv(broker.url, session_engine, redis.Redis.from_url(REDIS_URL, decode_responses=True),
                  env["REDIS_PREFIX"], f"raw-{token}", f"tagged-{token}", env["DEADLETTER_TOPIC"],
                  SinkSettings.from_env(env))
    ensure_topics(broker.url, {e.raw_topic: 3, e.tagged_topic: 3, e.deadletter_topic: 1})
    yield e
    keys = list(e.redis.scan_iter(f"{e.redis_prefix}*", count=1000))
    if keys:
        e.redis.delete(*keys)
    e.redis.close()


def _schema_of(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT current_schema()")).scalar_one()
