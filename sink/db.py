"""Engine construction: one place decides how connections find the sink's schema."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine

from sink.settings import SinkSettings


def engine_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` (what psql and most tools take) mean psycopg2, the
    driver we install; SQLAlchemy 2.1 would otherwise look for psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def make_engine(settings: SinkSettings, **kwargs: object) -> Engine:
    """An engine whose every connection resolves unqualified names in ``settings.database_schema``.

    The schema goes into search_path at connect time (not into MetaData) so the SQL functions in
    sink/sql, which analysts also call by hand, resolve the same tables as the ORM does.
    """
    search_path = settings.database_schema
    if search_path != "public":
        search_path += ",public"
    # UTC sessions: trend buckets are UTC minutes/hours, and zone-less timestamps in tagged
    # records must mean the same instant to Python (which buckets them) and to PostgreSQL.
    connect_args = {"options": f"-csearch_path={search_path} -ctimezone=UTC", "connect_timeout": 5}
    return create_engine(engine_url(settings.database_url), connect_args=connect_args,
                         pool_pre_ping=True, **kwargs)  # type: ignore[arg-type]
