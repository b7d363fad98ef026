"""What a tweet may contain: the one rule every entry point applies through the wire messages.

PostgreSQL and the text pipeline cannot hold everything JSON can express, so a value that would
fail a stage later is refused where it is first parsed (ingest, the tagger, the sink, replay all
validate with :mod:`contracts.messages`, which applies these rules):

* **strings** (ids, texts, user names, languages, entity texts and labels, model names):
  no NUL or other C0/C1 control character except tab, line feed and carriage return (tweets
  have line breaks; PostgreSQL refuses NUL outright), and no unpaired UTF-16 surrogate (valid
  in a Python ``str`` and in escaped JSON, but not encodable as UTF-8);
* **ids**: 1 to :data:`MAX_ID_CHARS` characters and no surrounding whitespace; an id is a
  primary-key and index entry, and an index row over 8 KiB is refused by PostgreSQL;
* **timestamps**: between :data:`EARLIEST` and :data:`LATEST` (UTC); naive ones are taken as
  UTC. Outside that range bucket arithmetic overflows (year 1 in a +05:00 zone is before
  ``datetime.min`` in UTC) and no tweet is dated there anyway;
* **entity texts**: at most :data:`MAX_ENTITY_CHARS`, because they are index keys of the trend
  tables too.

The messages check the string rules as patterns that pydantic matches in Rust (:data:`SAFE_TEXT`,
:data:`ID`), one pass per string and no Python call: a dozen Python validator calls per tagged
tweet were a fifth of its validation's instructions. A string with an unpaired surrogate never
reaches the pattern (it is not valid UTF-8; pydantic refuses it as ``string_unicode``, and JSON
parsing refuses the escape). :func:`describe` turns either error back into this module's words
(``control character U+0000 at index 3``), which dead letters carry. The functions below are the
same rules for plain strings (the HTTP API) and say what exactly is wrong.

Every violation is a ``ValueError`` or a pydantic ``ValidationError``, which
:func:`contracts.decoding.decode_records` turns into a dead letter with the reason.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Mapping

MAX_ID_CHARS = 128
MAX_ENTITY_CHARS = 512
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)

# C0 controls but \t \n \r, DEL, C1 controls; and lone surrogates (a str can hold them).
# One pattern, one scan per string: every stage runs this on every string of every message.
_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rules as Rust regex patterns (anchored: ``$`` is the end of the text there).
_SAFE_CHAR = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_SAFE_EDGE = r"[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
SAFE_TEXT = rf"^{_SAFE_CHAR}*$"
ID = rf"^{_SAFE_EDGE}(?:{_SAFE_CHAR}*{_SAFE_EDGE})?$"


def check_text(value: str) -> str:
    """A string PostgreSQL and UTF-8 can hold, unchanged; otherwise ValueError saying why."""
    bad = _BAD.search(value)
    if bad:
        code = ord(bad.group())
        what = "unpaired surrogate" if 0xD800 <= code <= 0xDFFF else "control character"
        raise ValueError(f"{what} U+{code:04X} at index {bad.start()}")
    return value


def check_id(value: str) -> str:
    if not value or value != value.strip():
        raise ValueError("id is empty or has surrounding whitespace")
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"id of {len(value)} characters is longer than {MAX_ID_CHARS}")
    return check_text(value)


def check_time(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime inside [EARLIEST, LATEST)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        utc = value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"timestamp {value.isoformat()} is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"timestamp {value.isoformat()} is outside "
                         f"{EARLIEST.year}..{LATEST.year - 1}")
    return utc


def describe(error: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as ``loc: what is wrong``,
    in this module's words where it broke one of its patterns."""
    where = ".".join(str(part) for part in error.get("loc", ())) or "record"
    message = str(error.get("msg", "invalid value"))
    value = error.get("input")
    if error.get("type") in ("string_pattern_mismatch", "string_unicode") and isinstance(value, str):
        rule = check_id if error.get("ctx", {}).get("pattern") == ID else check_text
        try:
            rule(value)
        except ValueError as exc:
            message = str(exc)
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return f"{where}: {message}"
