"""Poison input at ingest: the shared validation rule rejects it with a reason, and ids
derived for records without one are the same on every run."""
from __future__ import annotations

import pytest

from ingest.records import Rejection, parse_record
from ingest.sources import RawRecord


@pytest.mark.parametrize("data, reason", [
    (b'{"id": "1", "text": "a\\u0000b"}', "invalid text"),
    (b'{"id": "1", "text": "a\\ud800b"}', "invalid text"),
    (b'{"id": "1", "text": "x", "created_at": "0001-01-01T00:00:00+05:00"}', "invalid created_at"),
    (b'{"id": "' + b"7" * 9000 + b'", "text": "x"}', "invalid id"),
    (b'{"id": "1", "text": "x", "user": "a\\u001bb"}', "invalid user"),
])
def test_poison_json_is_rejected_by_the_shared_rule(data: bytes, reason: str) -> None:
    result = parse_record(RawRecord("f.jsonl", 1, data, "jsonl"), max_bytes=16384,
                          unescape_html=False)
    assert isinstance(result, Rejection) and result.reason.startswith(reason), result


def test_nul_in_plain_text_is_rejected() -> None:
    result = parse_record(RawRecord("f.txt", 1, b"a\x00b", "text"), max_bytes=16384,
                          unescape_html=False)
    assert isinstance(result, Rejection) and result.reason.startswith("invalid text")


def test_ids_without_id_or_created_at_are_stable_across_runs() -> None:
    lines = [b'{"text": "same"}', b'{"text": "same"}', b'{"text": "other"}']

    def ids() -> list[str]:
        return [parse_record(RawRecord("dir/a.jsonl", n, d, "jsonl"), max_bytes=16384,
                             unescape_html=False).id for n, d in enumerate(lines, 1)]

    first = ids()
    assert first == ids() and len(set(first)) == 3
