"""The part every word-level backend shares: raw tweets are split with tagger.words, tagged word
by word, and entities are mapped back onto character offsets of the raw text."""
from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tagger.inference import EntityMention, PredictStats, WordEntity
from tagger.words import split_words

SpanTuple = tuple[int, int, str, float]  # first word, end word (exclusive), label, score


class WordTagger(ABC):
    """A backend that decides one tag per word (token classification, BiLSTM-CRF)."""

    model_name: str
    model_version: str
    precision: str
    device: object

    # Python's cyclic garbage collector paused while a batch is tagged: a backend whose batch
    # allocates tens of thousands of small objects (words, feature tuples) and makes no
    # reference cycles would otherwise run several collections per batch, each walking every
    # object the process holds (torch, transformers: ~a quarter of a cold BiLSTM-CRF batch).
    pause_gc = False

    def __init__(self) -> None:
        self.stats = PredictStats()

    @contextmanager
    def _collector_paused(self) -> Iterator[None]:
        if not self.pause_gc or not gc.isenabled():
            yield
            return
        gc.disable()
        try:
            yield
        finally:
            gc.enable()

    @property
    @abstractmethod
    def labels(self) -> list[str]:
        """The entity types this model can produce (after any label mapping)."""

    @abstractmethod
    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[SpanTuple]]:
        """Entities of each sentence over its words."""

    def predict(self, texts: Sequence[str]) -> list[list[EntityMention]]:
        """Entities with character offsets into each raw text (``text[start:end]`` is the entity)."""
        with self._collector_paused():
            words = [split_words(text) for text in texts]
            found = self.tag_words([[w.text for w in ws] for ws in words])
            out = []
            for text, ws, spans in zip(texts, words, found):
                row = []
                for s, e, label, score in spans:
                    lo, hi = ws[s].start, ws[e - 1].end
                    row.append(EntityMention(lo, hi, text[lo:hi], label, score))
                out.append(row)
        return out

    def predict_words(self, sentences: Sequence[Sequence[str]]) -> list[list[WordEntity]]:
        """Entities over pre-split words (CoNLL tokens, or a line split on spaces)."""
        with self._collector_paused():
            found = self.tag_words(sentences)
        return [[WordEntity(s, e, " ".join(words[s:e]), label, score) for s, e, label, score in spans]
                for words, spans in zip(sentences, found)]
