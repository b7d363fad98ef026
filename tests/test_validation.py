"""The wire messages' string rules (patterns pydantic matches in Rust) are exactly the rules of
contracts.validation, and a refusal says what is wrong in that module's words."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from contracts.decoding import short_error
from contracts.messages import Entity, TaggedTweet, Tweet
from contracts.validation import check_id, check_text

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
# Every code point of the first planes where the rules could differ (controls, spaces, the
# surrogates, format characters) and a sample of the rest.
CODE_POINTS = list(range(0x3100)) + list(range(0xD7F0, 0xE010)) + [0xFEFF, 0xFFFD, 0x1F600, 0x10FFFF]


def _accepts(rule, value: str) -> bool:
    try:
        rule(value)
    except ValueError:
        return False
    return True


def _tweet_accepts(**fields: str) -> bool:
    try:
        Tweet(created_at=NOW, **{"id": "x", "text": "x", **fields})
    except ValidationError:
        return False
    return True


def test_text_pattern_refuses_exactly_what_check_text_refuses() -> None:
    differ = [hex(c) for c in CODE_POINTS
              if _tweet_accepts(text=f"a{chr(c)}b") != _accepts(check_text, f"a{chr(c)}b")]
    assert differ == []
    assert _tweet_accepts(text="tab\there\nline\r\n é 中 😀") and not _tweet_accepts(text="bell \x07")


def test_id_pattern_refuses_exactly_what_check_id_refuses() -> None:
    cases = [value for c in CODE_POINTS for value in (chr(c), f"{chr(c)}a", f"a{chr(c)}", f"a{chr(c)}b")]
    differ = [ascii(v) for v in cases if _tweet_accepts(id=v) != _accepts(check_id, v)]
    assert differ == []
    assert not _tweet_accepts(id="") and not _tweet_accepts(id="x" * 129) and _tweet_accepts(id="x" * 128)


@pytest.mark.parametrize("raw, reason", [
    (b'{"id": "1", "text": "a\\u0000b"}', "text: control character U+0000 at index 1"),
    (b'{"id": "1", "text": "a\\bb"}', "text: control character U+0008 at index 1"),
    (b'{"id": "1", "text": "a\xc2\x85b"}', "text: control character U+0085 at index 1"),
    (b'{"id": "1", "text": "a\\u007f"}', "text: control character U+007F at index 1"),
    (b'{"id": " 1", "text": "a"}', "id: id is empty or has surrounding whitespace"),
    (b'{"id": "1", "text": "a", "user": "x\\u001b[31m"}', "user: control character U+001B at index 1"),
])
def test_refusals_of_json_input_say_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        Tweet.model_validate_json(raw.replace(b"}", b', "created_at": "2026-01-01T00:00:00Z"}'))
    assert short_error(info.value) == f"ValidationError: {reason}"


def test_refusals_of_python_input_name_each_field() -> None:
    with pytest.raises(ValidationError) as info:
        TaggedTweet(id="1", text="lone \ud800", created_at=NOW, model_name="m", model_version="v",
                    entities=[Entity(start=0, end=1, text="a", label="person", score=1.0),
                              {"start": 0, "end": 1, "text": "b" * 513, "label": "o\x01", "score": 1.0}])
    assert short_error(info.value, limit=1000) == (
        "ValidationError: text: unpaired surrogate U+D800 at index 5; "
        "entities.1.text: String should have at most 512 characters; "
        "entities.1.label: control character U+0001 at index 1")
