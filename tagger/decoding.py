"""Turns per-span label scores into entities: highest score first, never overlapping."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodedSpan:
    start: int  # word index
    end: int  # word index, exclusive
    label_id: int
    score: float


def greedy_decode(
    spans: np.ndarray, scores: np.ndarray, label_ids: np.ndarray, outside_id: int = 0
) -> list[DecodedSpan]:
    """Take non-O spans by descending score, skipping any that overlaps one already taken.

    Ties keep candidate order (a stable sort), as span_marker's ``sorted(..., reverse=True)`` does.
    The result is ordered by start word.
    """
    candidates = np.flatnonzero(label_ids != outside_id)
    if len(candidates) == 0:
        return []
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    taken = np.zeros(int(spans[:, 1].max()) if len(spans) else 0, dtype=bool)
    chosen: list[DecodedSpan] = []
    for i in order:
        start, end = int(spans[i, 0]), int(spans[i, 1])
        if taken[start:end].any():
            continue
        taken[start:end] = True
        chosen.append(DecodedSpan(start, end, int(label_ids[i]), float(scores[i])))
    chosen.sort(key=lambda span: span.start)
    return chosen
