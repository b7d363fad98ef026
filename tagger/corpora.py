"""Training corpora with their own label sets, mapped onto the model's types soundly.

A corpus is a CoNLL file, optionally with a label map (``--train FILE:MAP.json``). Without a map
every label is taken as it is and an ``O`` means outside. A map says, for a corpus annotated with
other or fewer types, what each of its labels may be in ours, and what its ``O`` may be:

.. code-block:: json

    {"name": "btc",
     "labels": {"PER": ["person", "musicartist"], "LOC": ["geo-loc", "facility"],
                "ORG": ["company", "sportsteam", "musicartist", "tvshow", "other"]},
     "outside": ["O", "product", "movie", "tvshow", "other", "facility", "company"],
     "drop_mentions": true,
     "epoch_share": 0.3}

A span is trained towards *the set* of types it may have (the loss is the negative log of the
probability mass on that set), so ORG teaches "some entity" without forcing one type, and an ``O``
in a corpus that never annotates products is no evidence that a span is not a product.
``drop_mentions`` turns labelled @mentions into outside spans (WNUT16 never labels them).
``epoch_share`` draws that share of the corpus's sentences afresh each epoch, so a large
weakly-labelled corpus does not drown the fully labelled one or multiply the epoch time.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tagger.conll import Sentence, read_conll, spans_from_iob2

OUTSIDE = "O"
_MAP_SUFFIX = re.compile(r"^(?P<file>.+):(?P<map>[^:]+\.json)$")


class CorpusError(ValueError):
    """A corpus or label map that cannot be used as given."""


@dataclass(frozen=True)
class LabelMap:
    name: str
    labels: dict[str, tuple[str, ...]]
    outside: tuple[str, ...] = (OUTSIDE,)
    drop_mentions: bool = False
    epoch_share: float = 1.0

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CorpusError(f"label map {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise CorpusError(f"label map {path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
            raise CorpusError(f"label map {path} needs a 'labels' object (source label -> list of types)")
        labels = {str(k): tuple(_as_list(v, path, k)) for k, v in data["labels"].items()}
        outside = tuple(_as_list(data.get("outside", [OUTSIDE]), path, "outside"))
        if OUTSIDE not in outside:
            raise CorpusError(f"label map {path}: 'outside' must include {OUTSIDE!r}")
        share = float(data.get("epoch_share", 1.0))
        if not 0 < share <= 1:
            raise CorpusError(f"label map {path}: epoch_share must be in (0, 1], got {share}")
        return cls(name=str(data.get("name") or path.stem), labels=labels, outside=outside,
                   drop_mentions=bool(data.get("drop_mentions", False)), epoch_share=share)

    def types(self) -> set[str]:
        found = {t for targets in self.labels.values() for t in targets} | set(self.outside)
        return found - {OUTSIDE}


def _as_list(value: object, path: Path, key: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise CorpusError(f"label map {path}: {key!r} must be a type or a non-empty list of types")
    return list(value)


@dataclass(frozen=True)
class GoldSpan:
    start: int
    end: int  # exclusive, in words
    allowed: frozenset[str]  # the types this span may have ("O" included where it may be outside)


@dataclass
class TrainingText:
    words: list[str]
    spans: list[GoldSpan]
    outside: frozenset[str]  # what any other span may be
    corpus: str


@dataclass
class Corpus:
    name: str
    path: str
    texts: list[TrainingText] = field(default_factory=list)
    epoch_share: float = 1.0
    problems: list[str] = field(default_factory=list)
    dropped_mentions: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``FILE`` or ``FILE:MAP.json`` (the map is recognised by its suffix, so paths may hold ':')."""
    match = _MAP_SUFFIX.match(spec)
    if match and not Path(spec).exists():
        return match["file"], match["map"]
    return spec, None


def load_corpus(spec: str) -> Corpus:
    path, map_path = parse_spec(spec)
    if not Path(path).is_file():
        raise CorpusError(f"training file {path} does not exist")
    label_map = LabelMap.load(map_path) if map_path else None
    sentences, problems = read_conll(path)
    if not sentences:
        raise CorpusError(f"{path} has no CoNLL sentences (one 'token<TAB>tag' per line, a blank line after each)")
    corpus = Corpus(name=label_map.name if label_map else Path(path).stem, path=path,
                    epoch_share=label_map.epoch_share if label_map else 1.0, problems=problems)
    for sentence in sentences:
        corpus.texts.append(_text(sentence, label_map, corpus))
    return corpus


def _text(sentence: Sentence, label_map: LabelMap | None, corpus: Corpus) -> TrainingText:
    if label_map is None:
        spans = [GoldSpan(s.start, s.end, frozenset({s.label})) for s in spans_from_iob2(sentence.tags)]
        return TrainingText(list(sentence.words), spans, frozenset({OUTSIDE}), corpus.name)
    spans = []
    for s in spans_from_iob2(sentence.tags):
        if label_map.drop_mentions and sentence.words[s.start].startswith("@"):
            # The target corpus never labels @mentions: this one is outside, certainly.
            spans.append(GoldSpan(s.start, s.end, frozenset({OUTSIDE})))
            corpus.dropped_mentions += 1
            continue
        targets = label_map.labels.get(s.label)
        if targets is None:
            # A label the map does not name: we cannot say what it is, only that it is not outside.
            corpus.unmapped[s.label] = corpus.unmapped.get(s.label, 0) + 1
            continue
        spans.append(GoldSpan(s.start, s.end, frozenset(targets)))
    return TrainingText(list(sentence.words), spans, frozenset(label_map.outside), corpus.name)


def model_types(corpora: Iterable[Corpus]) -> list[str]:
    """The entity types the corpora can teach, sorted (the model's label order after "O")."""
    found: set[str] = set()
    for corpus in corpora:
        for text in corpus.texts:
            for span in text.spans:
                found |= span.allowed
            found |= text.outside
    return sorted(found - {OUTSIDE})


def _normalized(words: Sequence[str]) -> tuple[str, ...]:
    """A tweet's words without the parts that vary between copies of it (URLs, mentions, RT)."""
    keep = []
    for w in words:
        low = w.lower()
        if low.startswith(("http://", "https://", "www.", "@")) or low == "rt":
            continue
        keep.append(low)
    return tuple(keep)


def drop_overlap(texts: list[TrainingText], held_out: Sequence[Sentence]) -> tuple[list[TrainingText], int]:
    """Removes training texts that repeat a held-out (dev) tweet, so a dev figure stays a dev figure."""
    seen = {_normalized(s.words) for s in held_out}
    seen.discard(())
    kept = [t for t in texts if _normalized(t.words) not in seen]
    return kept, len(texts) - len(kept)


__all__ = ["CorpusError", "LabelMap", "GoldSpan", "TrainingText", "Corpus", "parse_spec", "load_corpus",
           "model_types", "drop_overlap"]
