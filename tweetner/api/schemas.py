"""Request and response bodies of the HTTP API; FastAPI turns them into the OpenAPI document."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class TagRequest(BaseModel):
    texts: list[str] = Field(description="raw texts (tweets), tagged as one batch",
                             examples=[["Barack Obama visits Paris"]])


class TaggedEntity(BaseModel):
    start: int = Field(description="character offset of the first character")
    end: int = Field(description="character offset after the last character (exclusive)")
    text: str = Field(description="the text's characters start:end")
    label: str
    score: float


class TagResult(BaseModel):
    entities: list[TaggedEntity]


class TagResponse(BaseModel):
    model_name: str
    model_version: str
    results: list[TagResult] = Field(description="one per text, in request order")


class TrendEntry(BaseModel):
    entity: str = Field(description="normalized entity (the aggregation key)")
    label: str
    count: int
    score: float = Field(description="count for top; how unusual the window is for trending")


class TrendsResponse(BaseModel):
    kind: str = Field(description="top or trending")
    window_s: float
    label: str | None
    at: datetime = Field(description="the minute the answer is for")
    rows: list[TrendEntry]


class TimelineBucket(BaseModel):
    bucket_start: datetime
    count: int


class TimelineResponse(BaseModel):
    entity: str = Field(description="the normalized form the counts are kept under")
    label: str | None
    bucket: str
    buckets: list[TimelineBucket]


class StoredRate(BaseModel):
    minute: datetime
    stored: int


class GroupLag(BaseModel):
    group: str
    topic: str
    lag: int = Field(description="records on the topic the group has not committed yet")


class DeadLetterSummary(BaseModel):
    stage: str
    reason: str
    source: str | None = None
    failed_at: datetime | None = None


class KafkaStatus(BaseModel):
    reachable: bool
    error: str | None = None
    ingested_total: int | None = Field(None, description="records ever on the tweets topic")
    tagged_total: int | None = Field(None, description="records ever on the tagged topic")
    ingested_per_s: float | None = None
    tagged_per_s: float | None = None
    lag: list[GroupLag] = []
    dead_letters_total: int | None = None
    recent_dead_letters: list[DeadLetterSummary] = []


class StoreStatus(BaseModel):
    tweets_stored: int
    stored_last_minute: int
    last_stored_at: datetime | None
    latency_p50_s: float | None = Field(None, description="ingest to PostgreSQL, last 5 minutes")
    latency_p95_s: float | None = None
    per_minute: list[StoredRate] = Field(description="tweets stored per minute, last 15 minutes")


class PipelineResponse(BaseModel):
    at: datetime
    store: StoreStatus
    kafka: KafkaStatus | None = Field(None, description="absent when no Kafka is configured")
