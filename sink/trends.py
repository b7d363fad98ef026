"""Python API over the SQL trend functions in sink/sql (the same answers analysts get in psql)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, Sequence

from sqlalchemy import text

from sink.normalize import normalize_entity

DEFAULT_WINDOW = timedelta(minutes=15)
DEFAULT_BASELINE = timedelta(hours=24)
DEFAULT_MIN_COUNT = 5


class Executes(Protocol):
    """A Session or a Connection: anything with ``execute(statement, params)``."""

    def execute(self, statement: Any, parameters: Any = ...) -> Any: ...


@dataclass(frozen=True)
class TrendRow:
    entity: str
    label: str
    count: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimelinePoint:
    bucket_start: datetime
    count: int


def query_time(now: datetime | None = None) -> datetime:
    """The minute a query is answered for. Answers only depend on the minute, so truncating makes
    the SQL path and the Redis path (keyed by minute) see exactly the same buckets."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc).replace(second=0, microsecond=0)


def _rows(result: Any) -> list[TrendRow]:
    return [TrendRow(r.entity, r.label, int(r.count), float(r.score)) for r in result]


def top_entities(session: Executes, window: timedelta = DEFAULT_WINDOW, label: str | None = None,
                 limit: int = 20, now: datetime | None = None) -> list[TrendRow]:
    return _rows(session.execute(
        text("SELECT * FROM top_entities(:w, :label, :limit, :now)"),
        {"w": window, "label": label, "limit": limit, "now": query_time(now)}))


def trending_entities(session: Executes, window: timedelta = DEFAULT_WINDOW,
                      label: str | None = None, limit: int = 20, now: datetime | None = None,
                      baseline: timedelta = DEFAULT_BASELINE,
                      min_count: int = DEFAULT_MIN_COUNT, smoothing: float = 1.0) -> list[TrendRow]:
    return _rows(session.execute(
        text("SELECT * FROM trending_entities(:w, :label, :limit, :baseline, :min_count, :now, "
             ":smoothing)"),
        {"w": window, "label": label, "limit": limit, "baseline": baseline,
         "min_count": min_count, "now": query_time(now), "smoothing": smoothing}))


def entity_timeline(session: Executes, entity: str, label: str | None = None,
                    start: datetime | None = None, end: datetime | None = None,
                    bucket: str = "hour", now: datetime | None = None) -> list[TimelinePoint]:
    """Counts per bucket ("minute" or "hour") for an entity, given in any surface form."""
    if bucket not in ("minute", "hour"):
        raise ValueError("bucket must be 'minute' or 'hour'")
    end = end or query_time(now)
    start = start or end - DEFAULT_BASELINE
    result = session.execute(
        text("SELECT * FROM entity_timeline(:e, :label, :start, :end, :bucket)"),
        {"e": normalize_entity(entity), "label": label, "start": start, "end": end,
         "bucket": bucket})
    return [TimelinePoint(r.bucket_start, int(r.count)) for r in result]


def format_table(rows: Sequence[Any]) -> str:
    """Trend rows as an aligned text table (`tweetner trends`, `tweetner up`)."""
    header = ("#", "entity", "label", "count", "score")
    body = [(str(i), r.entity, r.label, str(r.count), f"{r.score:.2f}")
            for i, r in enumerate(rows, 1)]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    right = {0, 3, 4}
    lines = []
    for row in (header, *body):
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    if not body:
        lines.append("(no entities in this window)")
    return "\n".join(lines)
