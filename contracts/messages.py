"""Messages that cross Kafka topics, shared by ingest, tagger and sink.

They are pydantic models serialised as JSON, so every stage validates what it reads itself and a
bad value becomes a dead letter instead of an exception inside a Faust deserializer.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator, BaseModel, Field

from contracts.validation import ID, MAX_ENTITY_CHARS, MAX_ID_CHARS, SAFE_TEXT, check_time

# The field types of every message: the rules of contracts.validation, applied on parse (the
# string rules as patterns pydantic matches without calling Python).
SafeText = Annotated[str, Field(pattern=SAFE_TEXT)]
TweetId = Annotated[str, Field(pattern=ID, max_length=MAX_ID_CHARS)]
EntityText = Annotated[str, Field(pattern=SAFE_TEXT, max_length=MAX_ENTITY_CHARS)]
Timestamp = Annotated[datetime, AfterValidator(check_time)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class KafkaRecord(Protocol):
    """What every stage reads off a topic (kafka-python's ConsumerRecord, Faust's events)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


def record_source(record: KafkaRecord) -> str:
    """Where a record came from, in the one form every dead letter uses: ``topic/partition@offset``."""
    return f"{record.topic}/{record.partition}@{record.offset}"


class Tweet(BaseModel):
    """A raw tweet as produced by ingest to the tweets topic (keyed by ``id``)."""

    id: TweetId
    text: SafeText
    created_at: Timestamp
    user: SafeText | None = None
    lang: SafeText | None = None
    # When ingest produced it; the pipeline benchmark measures latency from here, and of two
    # texts with one id the later ingested is the tweet (docs/pipeline.md, "Poison records").
    ingested_at: Timestamp = Field(default_factory=utcnow)


class Entity(BaseModel):
    """One entity mention with character offsets into ``Tweet.text`` (end exclusive)."""

    start: int = Field(ge=0, lt=2**31)
    end: int = Field(gt=0, lt=2**31)
    text: EntityText
    label: SafeText = Field(max_length=64)
    score: float = Field(allow_inf_nan=False)


class TaggedTweet(Tweet):
    """A tweet with the entities one model version found in it (tagged topic)."""

    entities: list[Entity]
    model_name: SafeText = Field(max_length=256)
    model_version: SafeText = Field(max_length=256)
    tagged_at: Timestamp = Field(default_factory=utcnow)


class DeadLetter(BaseModel):
    """A record some stage could not process, with why and where it came from."""

    stage: Literal["ingest", "tagger", "sink", "replay"]
    reason: str
    # Where the record came from: a file path and line, or a topic/partition/offset.
    source: str | None = None
    position: int | None = None
    # The offending payload, decoded leniently and truncated so dead letters stay small.
    payload: str = ""
    failed_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def for_payload(cls, stage: str, reason: str, payload: bytes | str | None, *,
                    source: str | None = None, position: int | None = None,
                    limit: int = 4096) -> "DeadLetter":
        if payload is None:
            text = ""
        elif isinstance(payload, bytes):
            text = payload[:limit].decode("utf-8", errors="backslashreplace")
        else:
            text = payload[:limit]
        return cls(stage=stage, reason=reason, source=source, position=position, payload=text)

    @classmethod
    def for_record(cls, stage: str, reason: str, record: KafkaRecord) -> "DeadLetter":
        """A record read off a topic, with its source and offset (reasons are capped at 1000 chars)."""
        return cls.for_payload(stage, reason[:1000], record.value, source=record_source(record),
                               position=record.offset)
