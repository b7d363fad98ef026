"""CoNLL reading: scheme detection, IOB2 normalisation, problem reporting, real WNUT files."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tagger.conll import (
    ConllFormatError,
    EntitySpan,
    Sentence,
    detect_scheme,
    labels_in,
    read_conll,
    spans_from_iob2,
    to_iob2,
)


def write(tmp_path: Path, text: str, name: str = "data.conll") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# The same two sentences in every scheme; IOB2 is what the reader must produce.
IOB2 = [
    ["B-person", "I-person", "O", "B-geo-loc", "B-geo-loc", "I-geo-loc"],
    ["B-company", "O", "B-person"],
]
IOB1 = [
    ["I-person", "I-person", "O", "I-geo-loc", "B-geo-loc", "I-geo-loc"],
    ["I-company", "O", "I-person"],
]
BIOES = [
    ["B-person", "E-person", "O", "S-geo-loc", "B-geo-loc", "E-geo-loc"],
    ["S-company", "O", "S-person"],
]
BILOU = [
    ["B-person", "L-person", "O", "U-geo-loc", "B-geo-loc", "L-geo-loc"],
    ["U-company", "O", "U-person"],
]


@pytest.mark.parametrize(
    "tags, scheme",
    [(IOB2, "IOB2"), (IOB1, "IOB1"), (BIOES, "BIOES"), (BILOU, "BIOES"), ([["O", "O"]], "IOB2"), ([], "IOB2")],
)
def test_detect_scheme(tags: list[list[str]], scheme: str) -> None:
    assert detect_scheme(tags) == scheme


def test_iob1_without_any_b_tag_is_detected() -> None:
    assert detect_scheme([["I-person", "O"], ["O", "I-geo-loc", "I-geo-loc"]]) == "IOB1"


@pytest.mark.parametrize("tags, scheme", [(IOB2, "IOB2"), (IOB1, "IOB1"), (BIOES, "BIOES"), (BILOU, "BIOES")])
def test_to_iob2(tags: list[list[str]], scheme: str) -> None:
    assert [to_iob2(t, scheme) for t in tags] == IOB2  # type: ignore[arg-type]


def test_to_iob2_repairs_like_conlleval() -> None:
    # IOB2 with a stray I- after O / after another type: conlleval starts an entity there.
    assert to_iob2(["O", "I-person", "I-person", "I-company"], "IOB2") == ["O", "B-person", "I-person", "B-company"]
    # BIOES: after E-/S- the entity is closed, so a following I- starts a new one.
    assert to_iob2(["S-person", "I-person", "E-person"], "BIOES") == ["B-person", "B-person", "I-person"]


def test_to_iob2_rejects_tags_outside_the_scheme() -> None:
    with pytest.raises(ValueError, match="not valid in IOB2"):
        to_iob2(["S-person"], "IOB2")
    with pytest.raises(ValueError, match="unknown tag shape"):
        to_iob2(["B-"], "IOB2")


def test_spans_from_iob2() -> None:
    tags = ["B-person", "I-person", "O", "I-geo-loc", "B-geo-loc", "I-geo-loc", "I-company", "B-x"]
    assert spans_from_iob2(tags) == [
        EntitySpan(0, 2, "person"),
        EntitySpan(3, 4, "geo-loc"),  # I- after O starts an entity
        EntitySpan(4, 6, "geo-loc"),
        EntitySpan(6, 7, "company"),  # I- after another type starts an entity
        EntitySpan(7, 8, "x"),  # entity running to the end
    ]
    assert spans_from_iob2([]) == [] and spans_from_iob2(["O"]) == []
    with pytest.raises(ValueError):
        spans_from_iob2(["S-person"])


def test_read_conll_tabs_spaces_docstart_and_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "-DOCSTART- O\n\n"
        "@paul\tO\nDisney\tB-facility\nworld\tI-facility\n\n\n"
        "New York   B-geo-loc\n"  # token with a space: everything before the last field
        "rocks O\r\n"
        "-DOCSTART-\tO\n"
        "Apple\tB-company\n",
    )
    sentences, problems = read_conll(path)
    assert problems == []
    assert sentences == [
        Sentence(["@paul", "Disney", "world"], ["O", "B-facility", "I-facility"], f"{path}:3"),
        Sentence(["New York", "rocks"], ["B-geo-loc", "O"], f"{path}:8"),
        Sentence(["Apple"], ["B-company"], f"{path}:11"),
    ]
    assert labels_in(sentences) == ["company", "facility", "geo-loc"]


@pytest.mark.parametrize("tags, scheme", [(IOB1, "IOB1"), (BIOES, "BIOES"), (BILOU, "BILOU")])
def test_read_conll_normalises_schemes(tmp_path: Path, tags: list[list[str]], scheme: str) -> None:
    text = "\n\n".join("\n".join(f"w{i}\t{t}" for i, t in enumerate(sent)) for sent in tags) + "\n"
    sentences, problems = read_conll(write(tmp_path, text, f"{scheme}.conll"))
    assert problems == []
    assert [s.tags for s in sentences] == IOB2


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.conll"
    path.write_bytes(
        b"good\tO\n"
        b"lonely\n"  # line 2: one field
        b"odd\tX-foo\n"  # line 3: unknown prefix
        b"empty\tB-\n"  # line 4: no type
        b"caf\xe9\tO\n"  # line 5: latin-1 byte, not UTF-8
        b"Paris\tB-geo-loc\n"
        b"\n"
        b"only\tbogus\n"  # line 8: the sentence's only line
        b"\n"
        b"end\tO\n"
    )
    sentences, problems = read_conll(path)
    assert [s.words for s in sentences] == [["good", "Paris"], ["end"]]
    assert [s.tags for s in sentences] == [["O", "B-geo-loc"], ["O"]]
    assert sentences[1].source == f"{path}:10"
    assert len(problems) == 5
    for lineno, fragment in [(2, "'lonely'"), (3, "X-foo"), (4, "'B-'"), (5, "undecodable"), (8, "bogus")]:
        assert any(p.startswith(f"{path}:{lineno}: ") and fragment in p for p in problems), (lineno, problems)


def test_strict_raises_on_first_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "fine\tO\nodd\tX-foo\nlonely\n")
    with pytest.raises(ConllFormatError) as info:
        read_conll(path, strict=True)
    assert f"{path}:2:" in str(info.value) and "odd\\tX-foo" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_file(tmp_path: Path) -> None:
    assert read_conll(write(tmp_path, "")) == ([], [])
    assert read_conll(write(tmp_path, "\n\n-DOCSTART- O\n\n", "blank.conll")) == ([], [])


WNUT16_TYPES = ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"]
WNUT17_TYPES = ["corporation", "creative-work", "group", "location", "person", "product"]


@pytest.mark.parametrize(
    "name, n_sentences, types",
    [("wnut16/train.conll", 2394, WNUT16_TYPES), ("wnut17/train.conll", 3394, WNUT17_TYPES)],
)
def test_real_wnut_files(shared_data: Path, name: str, n_sentences: int, types: list[str]) -> None:
    path = shared_data / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    sentences, problems = read_conll(path, strict=True)
    assert problems == []
    assert len(sentences) == n_sentences
    assert labels_in(sentences) == types
    assert all(len(s.words) == len(s.tags) > 0 for s in sentences)
    # The files are already IOB2: the reader must not change a single tag.
    raw_tags = [line.split("\t")[1] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert [t for s in sentences for t in s.tags] == raw_tags
    n_b = Counter(t[:2] for t in raw_tags)["B-"]
    assert sum(len(spans_from_iob2(s.tags)) for s in sentences) == n_b
