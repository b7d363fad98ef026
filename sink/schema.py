"""Tables of the sink and the one idempotent operation that creates or migrates them.

Column names avoid SQL reserved words (``user``, ``end``) so analysts never have to quote them.
"""
from __future__ import annotations

import logging
from datetime import datetime
from importlib import resources

from sqlalchemy import (BigInteger, DateTime, Float, Index, Integer, Text,
                        UniqueConstraint, func, text)
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

log = logging.getLogger(__name__)

# Bumped whenever sink/sql or the tables change; stored so operators can see what ran.
SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class TweetRow(Base):
    __tablename__ = "tweets"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    user_name: Mapped[str | None] = mapped_column(Text)
    lang: Mapped[str | None] = mapped_column(Text)
    ingested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tagged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    model_name: Mapped[str] = mapped_column(Text)
    # The version whose mentions count in the trend tables; older versions' mentions are kept.
    model_version: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_tweets_created_at", "created_at"),)


class MentionRow(Base):
    __tablename__ = "mentions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # No foreign key to tweets: the writer stores a tweet and its mentions in one transaction and
    # retention deletes both (sink.retention); the key's per-row check was a fifth of
    # PostgreSQL's work per stored batch. Schema version 2 dropped it from existing tables.
    tweet_id: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    char_start: Mapped[int] = mapped_column(Integer)
    char_end: Mapped[int] = mapped_column(Integer)
    surface: Mapped[str] = mapped_column(Text)
    normalized: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        # The idempotency key: the same tagged record written twice inserts nothing the second time.
        UniqueConstraint("tweet_id", "model_version", "char_start", "char_end", "label",
                         name="uq_mentions_span"),
        Index("ix_mentions_entity", "normalized", "label"),
    )


class TrendMinute(Base):
    __tablename__ = "trend_minute"

    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True)
    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        # The primary key serves "all labels in a time range"; these serve one label and timelines.
        Index("ix_trend_minute_label_time", "label", "bucket_start"),
        Index("ix_trend_minute_entity_time", "entity", "label", "bucket_start"),
    )


class TrendHour(Base):
    """Hourly rollup, kept in step with trend_minute by the writer in the same transaction."""

    __tablename__ = "trend_hour"

    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True)
    entity: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_trend_hour_label_time", "label", "bucket_start"),
        Index("ix_trend_hour_entity_time", "entity", "label", "bucket_start"),
    )


class SchemaInfo(Base):
    __tablename__ = "sink_schema_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def sql_files() -> list[tuple[str, str]]:
    """The analyst-facing SQL (views and functions), in file-name order."""
    folder = resources.files("sink") / "sql"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name, p.read_text(encoding="utf-8")) for p in files]


def create_schema(engine: Engine) -> None:
    """Create or migrate everything the sink needs; safe to run any number of times, concurrently."""
    name = _schema_of(engine)
    schema = engine.dialect.identifier_preparer.quote_schema(name)
    with engine.begin() as conn:
        # Serialises concurrent init-db runs on one schema (several sinks starting at once).
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('tweetner.sink.create_schema:' "
                          "|| :schema))"), {"schema": name})
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        conn.execute(text(f"SET LOCAL search_path TO {schema}"))
        Base.metadata.create_all(conn)
        _drop_mention_foreign_keys(conn)
        for name, sql in sql_files():
            log.debug("applying %s", name)
            conn.exec_driver_sql(sql)
        conn.execute(text(
            "INSERT INTO sink_schema_info (id, version) VALUES (1, :v) "
            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, applied_at = now()"),
            {"v": SCHEMA_VERSION})


def _drop_mention_foreign_keys(conn: Connection) -> None:
    """Version 1 -> 2: mentions lose their foreign key to tweets (whatever its name)."""
    names = conn.execute(text(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'mentions'::regclass AND contype = 'f'"
    )).scalars().all()
    for name in names:
        log.info("schema 2: dropping the foreign key %s of mentions", name)
        conn.execute(text(f'ALTER TABLE mentions DROP CONSTRAINT "{name}"'))


def _schema_of(engine: Engine) -> str:
    # make_engine put the schema first in search_path; read it back rather than pass it twice.
    with engine.connect() as conn:
        path = str(conn.execute(text("SHOW search_path")).scalar_one())
    return path.split(",")[0].strip().strip('"')
