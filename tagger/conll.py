"""Read CoNLL-style NER files and normalise their tags to IOB2.

Training and evaluation data arrive in whichever tagging scheme their authors
chose (IOB1, IOB2, BIOES, BILOU). Everything downstream sees IOB2 only, and every
line that cannot be used is reported with its file:line instead of vanishing.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

__all__ = [
    "ConllFormatError",
    "EntitySpan",
    "Scheme",
    "Sentence",
    "detect_scheme",
    "labels_in",
    "read_conll",
    "spans_from_iob2",
    "split_tag",
    "to_iob2",
]

Scheme = Literal["IOB1", "IOB2", "BIOES"]

# "O", or a one-letter prefix and a non-empty type. BILOU's U-/L- are read as BIOES's S-/E-.
_TAG_RE = re.compile(r"O|([BIESLU])-(\S+)")
_PREFIXES: dict[Scheme, frozenset[str]] = {
    "IOB1": frozenset("BI"),
    "IOB2": frozenset("BI"),
    "BIOES": frozenset("BIESLU"),
}


class ConllFormatError(ValueError):
    """A line of a CoNLL file that cannot be read; the message names file:line and the line."""


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]  # IOB2: B-x / I-x / O
    source: str  # "path:line" of the sentence's first token


@dataclass(frozen=True)
class EntitySpan:
    start: int  # word index
    end: int  # exclusive
    label: str


def split_tag(tag: str) -> tuple[str, str]:
    """A tag's prefix and entity type: ("B", "person") for "B-person", ("O", "") for "O".

    Any scheme's prefixes (B I E S, BILOU's L U); ValueError for anything else."""
    m = _TAG_RE.fullmatch(tag)
    if m is None:
        raise ValueError(f"unknown tag shape {tag!r}")
    return (m.group(1), m.group(2)) if m.group(1) else ("O", "")


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> Scheme:
    """Guess the tagging scheme of a corpus from all of its tag sequences.

    Any S-/E-/U-/L- tag means BIOES (BILOU included). Otherwise the corpus is IOB1
    when B- only ever separates two adjacent entities of the same type, which is
    the one place IOB1 uses it; a B- after O or after another type means IOB2.
    A corpus without entities is reported as IOB2, for which it is valid.
    """
    has_entities = False
    b_outside_iob1_role = False
    for tags in tag_sequences:
        prev_prefix, prev_type = "O", ""
        for tag in tags:
            prefix, etype = split_tag(tag)
            if prefix in ("E", "S", "L", "U"):
                return "BIOES"
            if prefix != "O":
                has_entities = True
            if prefix == "B" and not (prev_prefix in ("B", "I") and prev_type == etype):
                b_outside_iob1_role = True
            prev_prefix, prev_type = prefix, etype
    if has_entities and not b_outside_iob1_role:
        return "IOB1"
    return "IOB2"


def to_iob2(tags: Sequence[str], scheme: Scheme) -> list[str]:
    """Rewrite one sentence's tags from ``scheme`` to IOB2.

    An I-/E- tag that does not continue an open entity of its type starts a new
    one (that is IOB1's meaning, and conlleval's reading of broken IOB2/BIOES).
    In BIOES an entity closes after its E-/S- tag, so a following I- starts anew.
    """
    allowed = _PREFIXES[scheme]
    out: list[str] = []
    open_type = ""  # type of the entity the next I-/E- tag may continue
    for tag in tags:
        prefix, etype = split_tag(tag)
        if prefix == "O":
            out.append("O")
            open_type = ""
            continue
        if prefix not in allowed:
            raise ValueError(f"tag {tag!r} is not valid in {scheme}")
        continues = prefix in ("I", "E", "L") and etype == open_type
        out.append(f"I-{etype}" if continues else f"B-{etype}")
        closes = scheme == "BIOES" and prefix in ("E", "S", "L", "U")
        open_type = "" if closes else etype
    return out


def spans_from_iob2(tags: Sequence[str]) -> list[EntitySpan]:
    """Entity spans of an IOB2 sequence; an I-x after O or another type starts a new entity."""
    spans: list[EntitySpan] = []
    start, label = -1, ""
    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix not in ("B", "I", "O"):
            raise ValueError(f"tag {tag!r} is not IOB2")
        if prefix == "I" and etype == label:
            continue
        if label:
            spans.append(EntitySpan(start, i, label))
        start, label = (i, etype) if prefix != "O" else (-1, "")
    if label:
        spans.append(EntitySpan(start, len(tags), label))
    return spans


def labels_in(sentences: Iterable[Sentence]) -> list[str]:
    """Sorted entity types used by the sentences' tags."""
    return sorted({tag[2:] for s in sentences for tag in s.tags if tag != "O"})


def read_conll(path: str | PathLike[str], *, strict: bool = False) -> tuple[list[Sentence], list[str]]:
    """Read a CoNLL NER file: one ``token<whitespace>tag`` per line, blank lines between sentences.

    Returns the sentences with tags normalised to IOB2 and a list of problems as
    "file:line: reason" strings. A line that cannot be used (one field, unknown tag
    shape, undecodable bytes) is reported and left out; the rest of its sentence is
    kept. With ``strict=True`` the first problem raises ConllFormatError instead.
    """
    path = Path(path)
    problems: list[str] = []
    raw: list[tuple[list[str], list[str], int]] = []  # (words, tags, first line number)
    words: list[str] = []
    tags: list[str] = []
    first_line = 0

    def problem(lineno: int, reason: str, line: str) -> None:
        message = f"{path}:{lineno}: {reason}: {line!r}"
        if strict:
            raise ConllFormatError(message)
        problems.append(message)

    def end_sentence() -> None:
        nonlocal words, tags
        if words:
            raw.append((words, tags, first_line))
        words, tags = [], []

    # Decode line by line so one bad byte costs one line, and its number is known.
    for lineno, data in enumerate(path.read_bytes().split(b"\n"), start=1):
        data = data.rstrip(b"\r")
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem(lineno, f"undecodable bytes ({exc.reason} at byte {exc.start})", data.decode("utf-8", "replace"))
            continue
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            end_sentence()
            continue
        fields = line.split()
        if fields[0] == "-DOCSTART-":
            end_sentence()
            continue
        if len(fields) < 2:
            problem(lineno, "expected a token and a tag", line)
            continue
        token, tag = line.rstrip().rsplit(maxsplit=1)
        try:
            split_tag(tag)
        except ValueError as exc:
            problem(lineno, str(exc), line)
            continue
        if not words:
            first_line = lineno
        words.append(token.strip())
        tags.append(tag)
    end_sentence()

    scheme = detect_scheme(t for _, t, _ in raw)
    sentences = [Sentence(w, to_iob2(t, scheme), f"{path}:{n}") for w, t, n in raw]
    return sentences, problems
