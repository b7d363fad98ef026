"""A stand-in model for pipeline tests that do not exercise the real network.

Capitalised words are entities, labelled by a stable hash, so results are deterministic. A text
containing ``BOOM`` makes ``predict`` raise, to test the agent's per-tweet isolation.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Sequence

_WORD = re.compile(r"\b[A-Z][a-z]+\b")
_LABELS = ("person", "geo-loc", "company")


@dataclass
class FakeMention:
    start: int
    end: int
    text: str
    label: str
    score: float


class FakeTagger:
    model_name = "fake-capitals"
    model_version = "fake-1"

    def predict(self, texts: Sequence[str]) -> list[list[FakeMention]]:
        out = []
        for text in texts:
            if "BOOM" in text:
                raise RuntimeError("poisoned tweet")
            out.append([FakeMention(m.start(), m.end(), m.group(), _LABELS[zlib.crc32(m.group().encode()) % 3], 0.9)
                        for m in _WORD.finditer(text)])
        return out


def load(model_dir: str | None = None, device: str | None = None,
         precision: str | None = None) -> FakeTagger:
    return FakeTagger()
