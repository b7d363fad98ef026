"""Turning one raw line into a :class:`~contracts.messages.Tweet` or a reason to reject it.

Ids, when a record has none, are derived from content so that ingesting the same archive twice
produces the same keys and the idempotent sink stores nothing new:

* JSON Lines without ``id``: ``sha1(text + "\\x1f" + created_at)`` — the same tweet from any file
  gets the same id.
* JSON Lines with neither ``id`` nor ``created_at``: like plain text below (the ingestion time,
  which stands in for created_at, must not make the id differ between two runs).
* plain text: ``sha1(basename(file) + "\\x1f" + line number + "\\x1f" + text)`` — a line has no
  timestamp, so its place in its file is what identifies it (two identical retweets on different
  lines stay two tweets). For stdin the name is ``stdin``.

Ids are ``"h"`` + the first 24 hex digits, never colliding with numeric Twitter ids.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from pydantic import ValidationError

from contracts.messages import Tweet
from contracts.validation import describe
from ingest.sources import RawRecord


@dataclass(frozen=True)
class Rejection:
    reason: str


def derived_id(*parts: str) -> str:
    return "h" + hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]


def _clean_text(text: str, unescape: bool) -> str:
    return html.unescape(text) if unescape else text


def parse_record(raw: RawRecord, *, max_bytes: int, unescape_html: bool,
                 now: datetime | None = None) -> Tweet | Rejection:
    if len(raw.data) > max_bytes:
        return Rejection(f"oversized record: {len(raw.data)} bytes > {max_bytes}")
    try:
        line = raw.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(f"not UTF-8: invalid byte at offset {exc.start}")
    now = now or datetime.now(timezone.utc)
    if raw.fmt == "text":
        text = _clean_text(line, unescape_html).strip()
        if not text:
            return Rejection("empty text")
        return _validated(dict(id=positional_id(raw, text), text=text, created_at=now))
    return _parse_json(raw, line, unescape_html=unescape_html, now=now)


def positional_id(raw: RawRecord, text: str) -> str:
    """The id of a record whose content alone may repeat: its file name, line and text."""
    name = "stdin" if raw.source == "stdin" else os.path.basename(raw.source)
    return derived_id(name, str(raw.line), text)


def _validated(fields: dict) -> Tweet | Rejection:
    """A Tweet, or the first rule of contracts.validation it breaks as the rejection reason."""
    try:
        return Tweet(**fields)
    except ValidationError as exc:
        return Rejection(f"invalid {describe(exc.errors()[0])}")


def _twitter_time(value: object) -> object:
    """Twitter API v1.1 writes ``Wed Oct 10 20:19:24 +0000 2018``; pydantic reads ISO 8601 only."""
    if isinstance(value, str) and value[:3].isalpha():
        try:
            return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            pass
    return value


def _parse_json(raw: RawRecord, line: str, *, unescape_html: bool,
                now: datetime) -> Tweet | Rejection:
    if not line.strip():
        return Rejection("empty line")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return Rejection(f"invalid JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return Rejection(f"invalid JSON record: expected an object, got {type(obj).__name__}")
    text = obj.get("text")
    if text is None:
        return Rejection("missing text")
    if not isinstance(text, str):
        return Rejection(f"invalid text: expected a string, got {type(text).__name__}")
    text = _clean_text(text, unescape_html).strip()
    if not text:
        return Rejection("empty text")
    created_at = _twitter_time(obj.get("created_at"))
    record_id = obj.get("id", obj.get("id_str"))
    if isinstance(record_id, bool) or (record_id is not None and not isinstance(record_id, (str, int))):
        return Rejection(f"invalid id: expected a string or integer, got {type(record_id).__name__}")
    if record_id is not None and not str(record_id).strip():
        record_id = None
    fields = {
        "text": text,
        "created_at": created_at if created_at is not None else now,
        "user": obj.get("user"),
        "lang": obj.get("lang"),
    }
    # Twitter API objects carry the user as an object; keep its screen name.
    if isinstance(fields["user"], dict):
        fields["user"] = fields["user"].get("screen_name") or fields["user"].get("name")
    # A placeholder id lets the timestamp be validated (and made UTC) before the id is derived.
    tweet = _validated(dict(id=str(record_id) if record_id is not None else "pending", **fields))
    if isinstance(tweet, Rejection) or record_id is not None:
        return tweet
    if created_at is None:
        return tweet.model_copy(update={"id": positional_id(raw, text)})
    return tweet.model_copy(update={"id": derived_id(text, tweet.created_at.isoformat())})
