"""Builders for synthetic tagged-tweet streams and table dumps used across the sink tests."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, text

from contracts.messages import Entity, TaggedTweet


def tagged(tweet_id: str, created_at: datetime, entities: list[tuple[str, str]] | None = None,
           version: str = "v1", text_: str | None = None) -> TaggedTweet:
    """A tagged tweet whose text is the entities joined by spaces, with correct offsets."""
    entities = entities or []
    parts, ents, pos = [], [], 0
    for surface, label in entities:
        ents.append(Entity(start=pos, end=pos + len(surface), text=surface, label=label, score=0.9))
        parts.append(surface)
        pos += len(surface) + 1
    return TaggedTweet(id=tweet_id, text=text_ or " ".join(parts) or "nothing", created_at=created_at,
                       user="u", lang="en", entities=ents, model_name="test-model",
                       model_version=version)


def dump_tables(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every sink table except write-time stamps, in a stable order."""
    queries = {
        "tweets": "SELECT id, text, created_at, user_name, lang, model_name, model_version "
                  "FROM tweets ORDER BY id",
        "mentions": "SELECT tweet_id, model_version, char_start, char_end, surface, normalized, "
                    "label, score FROM mentions ORDER BY 1, 2, 3, 4, 7",
        "trend_minute": "SELECT * FROM trend_minute ORDER BY 1, 2, 3",
        "trend_hour": "SELECT * FROM trend_hour ORDER BY 1, 2, 3",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(q))] for name, q in queries.items()}


def ago(now: datetime, minutes: float) -> datetime:
    return now - timedelta(minutes=minutes)
