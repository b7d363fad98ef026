"""Tag sequences of a word-level tagger to entity spans: BIO / IOB2 / BIOES label sets.

A word tagger decides one tag per word; entities are decoded here with conlleval's reading of
imperfect sequences, as tagger.conll's to_iob2 + spans_from_iob2 do (an I- or E- that continues
nothing starts a new entity; in BIOES an entity closes after its E- or S-), on tag ids and
precomputed tables since it runs for every tweet.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tagger.conll import Scheme, split_tag
from tagger.corpora import OUTSIDE

_OUT, _BEGIN, _INSIDE, _SINGLE, _END = range(5)
_KIND = {"O": _OUT, "B": _BEGIN, "I": _INSIDE, "E": _END, "L": _END, "S": _SINGLE, "U": _SINGLE}


@dataclass(frozen=True)
class TagSet:
    """A model's tag names by id, their scheme, and the entity types they carry."""

    tags: tuple[str, ...]
    scheme: Scheme
    _kinds: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _types: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [split_tag(t) for t in self.tags]
        object.__setattr__(self, "_kinds", tuple(_KIND[p] for p, _ in parts))
        object.__setattr__(self, "_types", tuple(t for _, t in parts))

    @classmethod
    def from_tags(cls, tags: Sequence[str]) -> "TagSet":
        prefixes = set()
        for tag in tags:
            try:
                prefixes.add(split_tag(tag)[0])
            except ValueError:
                raise ValueError(f"label {tag!r} is not a BIO/IOB2/BIOES tag (O, B-x, I-x, E-x, S-x)") from None
        if OUTSIDE not in tags:
            # The tag a word outside every entity gets; without it no tag id means "no entity".
            raise ValueError(f"labels {list(tags)!r} have no {OUTSIDE!r} tag (outside any entity)")
        scheme: Scheme = "BIOES" if prefixes & set("ESLU") else "IOB2"
        return cls(tuple(tags), scheme)

    @property
    def outside(self) -> int:
        """The id of the "O" tag (wherever a checkpoint put it: not always 0)."""
        return self.tags.index(OUTSIDE)

    @property
    def labels(self) -> list[str]:
        """Entity types, sorted."""
        return sorted(set(self._types) - {""})

    def spans(self, tag_ids: Sequence[int], scores: Sequence[float],
              rename: Mapping[str, str | None] | None = None) -> list[tuple[int, int, str, float]]:
        """(first word, end word, label, score) per entity; a span's score is the mean of its
        words' tag probabilities. ``rename`` maps the model's types onto ours (None drops one)."""
        kinds, types = self._kinds, self._types
        found: list[tuple[int, int, str]] = []
        start, open_type, closed = -1, "", True
        for i, tag in enumerate(tag_ids):
            kind = kinds[tag]
            if kind == _OUT:
                if start >= 0:
                    found.append((start, i, open_type))
                start, closed = -1, True
                continue
            etype = types[tag]
            continues = kind in (_INSIDE, _END) and not closed and etype == open_type
            if not continues:
                if start >= 0:
                    found.append((start, i, open_type))
                start, open_type = i, etype
            closed = kind in (_SINGLE, _END)
            if closed:
                found.append((start, i + 1, open_type))
                start = -1
        if start >= 0:
            found.append((start, len(tag_ids), open_type))
        out = []
        for s, e, label in found:
            target: str | None = label
            if rename is not None and label in rename:
                target = rename[label]
            if target is None:
                continue
            out.append((s, e, target, float(sum(scores[s:e]) / (e - s))))
        return out
