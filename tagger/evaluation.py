"""Entity-level evaluation of a tagger on CoNLL sentences (conlleval: exact span and type)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from tagger.conll import Sentence, spans_from_iob2
from tagger.metrics import EntityScores, score_entities

if TYPE_CHECKING:
    from tagger.loading import Tagger


@dataclass
class Evaluation:
    scores: EntityScores
    sentences: int
    seconds: float

    def to_dict(self) -> dict:
        out = self.scores.to_dict()
        out["tweets"] = self.sentences
        out["seconds"] = round(self.seconds, 3)
        return out


def gold_spans(sentences: Sequence[Sentence]) -> list[set[tuple[int, int, str]]]:
    return [{(s.start, s.end, s.label) for s in spans_from_iob2(sent.tags)} for sent in sentences]


def evaluate(tagger: "Tagger", sentences: Sequence[Sentence], batch_sentences: int = 256,
             progress: Callable[[int], object] | None = None) -> Evaluation:
    """Scores over ``sentences``; ``progress(n)`` is told each time n more are tagged."""
    started = time.perf_counter()
    predicted: list[set[tuple[int, int, str]]] = []
    for i in range(0, len(sentences), batch_sentences):
        chunk = sentences[i : i + batch_sentences]
        for entities in tagger.predict_words([s.words for s in chunk]):
            predicted.append({(e.word_start, e.word_end, e.label) for e in entities})
        if progress is not None:
            progress(len(chunk))
    scores = score_entities(gold_spans(sentences), predicted)
    return Evaluation(scores=scores, sentences=len(sentences), seconds=time.perf_counter() - started)
