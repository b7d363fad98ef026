"""Loss weights for rare entity types (issue 8, item 6).

WNUT16's types are very unevenly represented (person and geo-loc spans outnumber tvshow's by
twenty to one), and the rare ones are where the model is weakest. A type's weight is
``(most frequent type's count / its count) ** power``, scaled so that the weights averaged over
the training spans are 1: the rare types weigh more, entities as a whole weigh what they did
against 'outside'. Only spans with one known type are counted (a partial label's set says
nothing about which of its types it is).

The focal term (``focal_gamma``, Lin et al. 2017) acts on examples, not types: each span's loss
is scaled by ``(1 - p) ** gamma``, p the probability the model gives its gold label (or its label
set), so spans it already gets right, mostly the many easy 'outside' ones, count less.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

import torch

from tagger.corpora import OUTSIDE, TrainingText


def type_counts(texts: Iterable[TrainingText]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        for span in text.spans:
            if len(span.allowed) == 1 and OUTSIDE not in span.allowed:
                counts[next(iter(span.allowed))] += 1
    return counts


def type_weights(counts: Counter[str], labels: Sequence[str], power: float) -> dict[str, float]:
    """The weight of each entity type in ``labels`` (1.0 for all when ``power`` is 0 or nothing
    was counted; a type without training spans gets the rarest counted type's weight)."""
    entity_types = [label for label in labels if label != OUTSIDE]
    seen = {t: counts[t] for t in entity_types if counts[t] > 0}
    if power == 0 or not seen:
        return {t: 1.0 for t in entity_types}
    top = max(seen.values())
    raw = {t: (top / n) ** power for t, n in seen.items()}
    scale = sum(seen.values()) / sum(seen[t] * raw[t] for t in seen)
    rarest = max(raw.values())
    return {t: raw.get(t, rarest) * scale for t in entity_types}


def focal_nll(nll: torch.Tensor, gamma: float) -> torch.Tensor:
    """Each example's negative log-likelihood scaled by ``(1 - p) ** gamma`` (p = exp(-nll));
    ``gamma`` 0 leaves it unchanged."""
    if not gamma:
        return nll
    return nll * (-torch.expm1(-nll)).clamp(min=0.0).pow(gamma)
