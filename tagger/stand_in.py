"""A model that costs (almost) nothing, to measure the pipeline's own cost.

``tweetner bench pipeline --stand-in`` runs the workers with it
(``TAGGER_MODEL_FACTORY=tagger.stand_in:load``): every capitalised word is an entity, labelled
by a stable hash of the word, so the output is deterministic and has the shape of real output
(a few entities per tweet, with offsets, labels and scores) while the model's time is a regex.
It implements :class:`tagger.tagging.TextTagger`; it is no NER model and never a default.
"""
from __future__ import annotations

import re
import zlib
from functools import lru_cache
from typing import NamedTuple, Sequence

_WORD = re.compile(r"\b[A-Z][a-z]+\b")
LABELS = ("person", "location", "corporation")


class StandInMention(NamedTuple):
    # A tuple: what the benchmark measures is the pipeline, so the stand-in's own objects must
    # cost as little as possible (a frozen dataclass was a tenth of the worker's CPU).
    start: int
    end: int
    text: str
    label: str
    score: float


class StandInTagger:
    model_name = "stand-in-capitals"
    model_version = "stand-in-1"

    def predict(self, texts: Sequence[str]) -> list[list[StandInMention]]:
        return [mentions_of(text) for text in texts]


def mentions_of(text: str) -> list[StandInMention]:
    """What the stand-in finds in one text (the benchmark also uses it to know what to expect)."""
    return [StandInMention(m.start(), m.end(), word, _label(word), 0.9)
            for m in _WORD.finditer(text) for word in (m.group(),)]


@lru_cache(maxsize=65_536)
def _label(word: str) -> str:
    return LABELS[zlib.crc32(word.encode()) % len(LABELS)]


def load(model_dir: str | None = None, device: str | None = None,
         precision: str | None = None) -> StandInTagger:
    """The factory signature of ``TAGGER_MODEL_FACTORY``; the arguments do not apply."""
    return StandInTagger()
