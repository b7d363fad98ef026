"""Entity-level precision/recall/F1 as conlleval computes them.

An entity counts as found only when a predicted span has exactly the gold start,
end and type; counts are pooled over all sentences (micro average). Each
sentence's entities are compared as a set, so the same span twice counts once.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tagger.conll import EntitySpan

__all__ = ["EntityScores", "TypeScore", "score_entities"]

SpanTuple = tuple[int, int, str]  # (start word, end word exclusive, label)
SentenceEntities = Iterable[SpanTuple] | Iterable[EntitySpan]


@dataclass
class TypeScore:
    precision: float
    recall: float
    f1: float
    support: int  # number of gold entities of this type


@dataclass
class EntityScores:
    precision: float
    recall: float
    f1: float
    per_type: dict[str, TypeScore]
    true_positives: int
    predicted: int
    gold: int

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "per_type": {
                label: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
                for label, s in self.per_type.items()
            },
        }


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _prf(tp: int, predicted: int, gold: int) -> tuple[float, float, float]:
    precision, recall = _ratio(tp, predicted), _ratio(tp, gold)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _as_set(entities: SentenceEntities) -> set[SpanTuple]:
    return {(e.start, e.end, e.label) if isinstance(e, EntitySpan) else (e[0], e[1], e[2]) for e in entities}


def score_entities(gold: Iterable[SentenceEntities], predicted: Iterable[SentenceEntities]) -> EntityScores:
    """Score predicted entities against gold, sentence by sentence (same order, same count).

    Each sentence's entities may be (start, end, label) tuples or EntitySpans.
    Types that occur only in predictions are listed too, with support 0, since
    they cost precision. Any ratio with a zero denominator is 0.0.
    """
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    # strict: a length mismatch means the two sides are misaligned, which would
    # silently produce meaningless scores.
    for gold_entities, predicted_entities in zip(gold, predicted, strict=True):
        g, p = _as_set(gold_entities), _as_set(predicted_entities)
        n_gold.update(label for _, _, label in g)
        n_pred.update(label for _, _, label in p)
        tp.update(label for _, _, label in g & p)

    per_type = {
        label: TypeScore(*_prf(tp[label], n_pred[label], n_gold[label]), support=n_gold[label])
        for label in sorted(n_gold.keys() | n_pred.keys())
    }
    total_tp, total_pred, total_gold = sum(tp.values()), sum(n_pred.values()), sum(n_gold.values())
    precision, recall, f1 = _prf(total_tp, total_pred, total_gold)
    return EntityScores(precision, recall, f1, per_type, total_tp, total_pred, total_gold)
