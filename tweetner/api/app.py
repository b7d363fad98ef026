"""The FastAPI application: POST /tag, GET /trends, GET /entities/{name}/timeline, GET /pipeline,
and the dashboard page at / (static files in tweetner/api/static, no CDN).

Handlers are plain functions: FastAPI runs them in its thread pool, so the blocking SQLAlchemy,
Redis, Kafka and model calls never stall the event loop.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError

from contracts.durations import parse_duration
from contracts.validation import check_text
from sink import trends as queries
from sink.cache import TrendCache
from sink.db import make_engine
from sink.normalize import normalize_entity
from sink.settings import SinkSettings
from tweetner.api.pipeline import KafkaMonitor, StoreMonitor
from tweetner.api.schemas import (PipelineResponse, TagRequest, TagResponse, TimelineBucket,
                                  TimelineResponse, TrendEntry, TrendsResponse)
from tweetner.api.settings import ApiSettings
from tweetner.api.tagging import LazyTagger, ModelUnavailable, TaggerFactory, default_factory

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_WINDOW = timedelta(days=400)
# A timeline is drawn as one bar per bucket; more than this is unreadable and slow to send.
MAX_TIMELINE_BUCKETS = 1500


def _duration(name: str, value: str, limit: timedelta = MAX_WINDOW) -> timedelta:
    duration = parse_duration(value)
    if duration is None:
        raise HTTPException(422, f"{name}: not a duration: {value!r} (try 15m, 1h, 2d)")
    if not timedelta(0) < duration <= limit:
        raise HTTPException(422, f"{name}: must be above 0 and at most {limit.days} days "
                                 f"(got {value!r})")
    return duration


def _database_error(exc: DBAPIError) -> str:
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    line = first[0] if first else type(exc).__name__
    if getattr(exc.orig, "pgcode", None) in ("42883", "42P01"):
        return ("the database has no tweetner tables; create them with `tweetner sink init-db` "
                f"({line})")
    return f"PostgreSQL is unavailable ({line})"


def create_app(sink_settings: SinkSettings | None = None, api_settings: ApiSettings | None = None,
               *, use_cache: bool = True, kafka_bootstrap: str | None = None,
               tagger_factory: TaggerFactory | None = None) -> FastAPI:
    """The API over the database ``sink_settings`` names; Kafka figures only with a bootstrap."""
    sink_settings = sink_settings or SinkSettings.from_env()
    api = api_settings or ApiSettings.from_env()
    engine = make_engine(sink_settings)
    cache = TrendCache(sink_settings, engine) if use_cache else None
    tagger = LazyTagger(tagger_factory or default_factory(api.model_dir, api.device, api.precision))
    store = StoreMonitor(engine, api.store_poll_s)
    kafka = (KafkaMonitor(kafka_bootstrap, sink_settings.topics,
                          {api.tagger_group: sink_settings.topics.tweets,
                           sink_settings.sink_group: sink_settings.topics.tagged},
                          api.kafka_poll_s) if kafka_bootstrap else None)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        if kafka is not None:
            kafka.close()
        if cache is not None:
            cache.close()
        engine.dispose()

    app = FastAPI(title="tweetner", lifespan=lifespan,
                  description="Named entities in tweets: tag texts, query top and trending "
                              "entities and their timelines, watch the pipeline.")
    app.state.tagger = tagger

    @app.exception_handler(DBAPIError)
    async def database_unavailable(_: Request, exc: DBAPIError) -> JSONResponse:
        return JSONResponse({"detail": _database_error(exc)}, status_code=503)

    @app.exception_handler(ModelUnavailable)
    async def model_unavailable(_: Request, exc: ModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.middleware("http")
    async def limit_tag_body(request: Request, call_next):
        # Refused before the body is read: the per-text limits below only see parsed JSON.
        length = request.headers.get("content-length", "")
        if request.url.path == "/tag" and length.isdigit() and int(length) > api.max_body_bytes:
            return JSONResponse({"detail": f"request body of {length} bytes is over the limit of "
                                           f"{api.max_body_bytes} ({api.max_batch} texts of "
                                           f"{api.max_text_chars} characters)"}, status_code=413)
        return await call_next(request)

    @app.post("/tag", response_model=TagResponse, summary="tag texts (one batch)",
              responses={413: {"description": "too many texts or a text too long"},
                         503: {"description": "the model could not be loaded"},
                         422: {"description": "a text PostgreSQL or UTF-8 cannot hold"}})
    def tag(body: TagRequest) -> TagResponse:
        if not body.texts:
            raise HTTPException(422, "texts: give at least one text")
        if len(body.texts) > api.max_batch:
            raise HTTPException(413, f"texts: {len(body.texts)} texts is over the limit of "
                                     f"{api.max_batch} per request (TWEETNER_API_MAX_BATCH)")
        for i, text in enumerate(body.texts):
            if len(text) > api.max_text_chars:
                raise HTTPException(413, f"texts[{i}]: {len(text)} characters is over the limit "
                                         f"of {api.max_text_chars} (TWEETNER_API_MAX_TEXT_CHARS)")
            try:
                check_text(text)
            except ValueError as exc:
                raise HTTPException(422, f"texts[{i}]: {exc}") from None
        return tagger.tag(body.texts)

    @app.get("/trends", response_model=TrendsResponse,
             summary="top or trending entities (what `tweetner trends` prints)")
    def get_trends(
        window: str = Query("15m", description="window ending now: 90s, 15m, 1h, 2d"),
        label: str | None = Query(None, description="only this label, e.g. person"),
        trending: bool = Query(False, description="rank by how unusual the window is"),
        limit: int = Query(20, ge=1, le=500),
        no_cache: bool = Query(False, description="ask PostgreSQL, not the Redis cache"),
        baseline: str = Query("24h", description="trending: the history compared against"),
        min_count: int = Query(queries.DEFAULT_MIN_COUNT, ge=1,
                               description="trending: fewer mentions in the window never trend"),
    ) -> TrendsResponse:
        span = _duration("window", window)
        base = _duration("baseline", baseline)
        at = queries.query_time()
        if cache is not None and not no_cache:
            rows = (cache.trending(span, label, limit, at, base, min_count) if trending
                    else cache.top(span, label, limit, at))
        else:
            with engine.connect() as conn:
                rows = (queries.trending_entities(conn, span, label, limit, at, base, min_count)
                        if trending else queries.top_entities(conn, span, label, limit, at))
        return TrendsResponse(kind="trending" if trending else "top",
                              window_s=span.total_seconds(), label=label, at=at,
                              rows=[TrendEntry(**r.to_dict()) for r in rows])

    @app.get("/entities/{name}/timeline", response_model=TimelineResponse,
             summary="one entity's mentions per minute or hour")
    def get_timeline(
        name: str,
        label: str | None = Query(None),
        window: str = Query("1h", description="how far back from now"),
        bucket: Literal["minute", "hour"] | None = Query(
            None, description="default: minute for windows up to 6h, else hour"),
    ) -> TimelineResponse:
        span = _duration("window", window)
        bucket = bucket or ("minute" if span <= timedelta(hours=6) else "hour")
        step = timedelta(minutes=1) if bucket == "minute" else timedelta(hours=1)
        if span / step > MAX_TIMELINE_BUCKETS:
            raise HTTPException(422, f"window: {window} in {bucket}s is over "
                                     f"{MAX_TIMELINE_BUCKETS} buckets; use bucket=hour or a "
                                     "shorter window")
        end = queries.query_time()
        with engine.connect() as conn:
            points = queries.entity_timeline(conn, name, label, end - span + step, end, bucket)
        return TimelineResponse(entity=normalize_entity(name), label=label, bucket=bucket,
                                buckets=[TimelineBucket(bucket_start=p.bucket_start,
                                                        count=p.count) for p in points])

    @app.get("/pipeline", response_model=PipelineResponse,
             summary="stored rates and latency; ingest/tag rates, lag and dead letters")
    def get_pipeline() -> PipelineResponse:
        return PipelineResponse(at=datetime.now(timezone.utc), store=store.status(),
                                kafka=kafka.status() if kafka is not None else None)

    @app.get("/health", summary="200 when PostgreSQL answers")
    def health() -> dict[str, str]:
        from sqlalchemy import text

        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
