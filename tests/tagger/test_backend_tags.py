"""Tag decoding of the word-level backends agrees with tagger.conll's reading of tag sequences."""
from __future__ import annotations

import random

import pytest

from tagger.backends.tags import TagSet
from tagger.conll import spans_from_iob2, to_iob2

IOB2 = ["O", "B-a", "I-a", "B-b", "I-b"]
BIOES = ["O", "B-a", "I-a", "E-a", "S-a", "B-b", "I-b", "E-b", "S-b"]


@pytest.mark.parametrize("tags", [IOB2, BIOES], ids=["iob2", "bioes"])
def test_decoding_equals_conll_on_any_sequence(tags: list[str]) -> None:
    tagset = TagSet.from_tags(tags)
    rng = random.Random(7)
    for _ in range(5000):
        ids = [rng.randrange(len(tags)) for _ in range(rng.randrange(0, 9))]
        names = [tags[i] for i in ids]
        expected = [(s.start, s.end, s.label) for s in spans_from_iob2(to_iob2(names, tagset.scheme))]
        assert [(s, e, label) for s, e, label, _ in tagset.spans(ids, [1.0] * len(ids))] == expected, names


def test_scores_renames_and_scheme() -> None:
    tagset = TagSet.from_tags(BIOES)
    assert tagset.scheme == "BIOES" and tagset.labels == ["a", "b"]
    ids = [BIOES.index(t) for t in ("B-a", "E-a", "O", "S-b")]
    assert tagset.spans(ids, [0.5, 1.0, 0.9, 0.8]) == [(0, 2, "a", 0.75), (3, 4, "b", 0.8)]
    assert tagset.spans(ids, [1.0] * 4, {"a": "person", "b": None}) == [(0, 2, "person", 1.0)]


def test_a_label_that_is_no_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="not a BIO"):
        TagSet.from_tags(["O", "PER"])


def test_the_outside_tag_is_found_wherever_it_is_and_required() -> None:
    assert TagSet.from_tags(["B-a", "I-a", "O"]).outside == 2
    with pytest.raises(ValueError, match="no 'O' tag"):
        TagSet.from_tags(["B-a", "I-a"])


def test_split_tag_is_public_in_conll() -> None:
    from tagger.conll import split_tag

    assert [split_tag(t) for t in ("O", "B-geo-loc", "U-x", "L-x")] == [("O", ""), ("B", "geo-loc"), ("U", "x"),
                                                                        ("L", "x")]
    with pytest.raises(ValueError):
        split_tag("PER")
