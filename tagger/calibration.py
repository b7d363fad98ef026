"""Tuning the entity decision threshold on dev.

Span classifiers trained with a dominant 'outside' class are conservative: most entity spans get
their type as second choice. Accepting a span whose best entity type reaches a threshold, instead
of requiring it to beat 'outside', trades precision for recall. The model runs once; every
threshold is then decoded from the same probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tagger.conll import Sentence
from tagger.evaluation import gold_spans
from tagger.inference import NerTagger
from tagger.metrics import score_entities

DEFAULT_GRID = tuple(round(t, 2) for t in np.arange(0.10, 0.96, 0.05))


@dataclass
class ThresholdResult:
    threshold: float | None  # None: argmax (span_marker's rule)
    precision: float
    recall: float
    f1: float


def sweep_thresholds(
    tagger: NerTagger, sentences: Sequence[Sentence], grid: Sequence[float] = DEFAULT_GRID
) -> list[ThresholdResult]:
    scored = tagger.span_probabilities([s.words for s in sentences])
    gold = gold_spans(sentences)
    results = []
    for threshold in (None, *grid):
        predicted = [
            {(s, e, label) for s, e, label, _ in tagger.decode(spans, probs, threshold)}
            for spans, probs in scored
        ]
        scores = score_entities(gold, predicted)
        results.append(ThresholdResult(threshold, scores.precision, scores.recall, scores.f1))
    return results


def best_threshold(results: Sequence[ThresholdResult], min_gain: float = 0.005) -> ThresholdResult:
    """The highest dev F1, but plain argmax unless a threshold beats it by ``min_gain`` (half a
    point): smaller differences are noise on a 1,000-tweet dev set, and argmax keeps span_marker's
    decoding rule."""
    argmax = next(r for r in results if r.threshold is None)
    best = max(results, key=lambda r: (round(r.f1, 6), r.threshold is None, r.threshold or 0.0))
    return best if best.f1 >= argmax.f1 + min_gain else argmax
