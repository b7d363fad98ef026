"""Training targets of the word-level backends from tagger.corpora's texts: the tags each word
may have, and the texts of an epoch."""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import numpy as np

from tagger.conll import Sentence
from tagger.corpora import OUTSIDE, Corpus, CorpusError, TrainingText, drop_overlap, load_corpus, model_types

log = logging.getLogger(__name__)


def load_training_corpora(specs: Sequence[str], dev: Sequence[Sentence]) -> list[Corpus]:
    """``FILE[:MAP.json]`` specs as `tweetner train --train` takes them; texts that repeat a dev
    tweet are left out (they would make the dev figure a training figure)."""
    corpora = [load_corpus(spec) for spec in specs]
    for corpus in corpora:
        corpus.texts, dropped = drop_overlap([t for t in corpus.texts if t.words], dev)
        if dropped:
            log.info("%s: %d tweets that repeat dev tweets left out", corpus.name, dropped)
    if not any(c.texts for c in corpora):
        raise CorpusError("no training tweets left: every one repeats a dev tweet (is --dev one of the --train files?)")
    return corpora


def tag_list(corpora: Sequence[Corpus]) -> list[str]:
    return [OUTSIDE, *(f"{p}-{t}" for t in model_types(corpora) for p in ("B", "I"))]


def allowed_tags(text: TrainingText, tags: list[str]) -> np.ndarray:
    """[words, tags]: the tags each word may have. One per word for a fully labelled tweet; a
    corpus with coarser labels (tagger.corpora) allows each type its map names."""
    index = {t: i for i, t in enumerate(tags)}
    allowed = np.zeros((len(text.words), len(tags)), dtype=bool)

    def mark(rows: slice, prefix: str, types) -> None:
        for t in types:
            key = OUTSIDE if t == OUTSIDE else f"{prefix}-{t}"
            if key in index:
                allowed[rows, index[key]] = True

    everywhere = slice(0, len(text.words))
    mark(everywhere, "B", text.outside)
    mark(everywhere, "I", text.outside)
    for span in text.spans:
        allowed[span.start : span.end] = False
        mark(slice(span.start, span.start + 1), "B", span.allowed)
        mark(slice(span.start + 1, span.end), "I", span.allowed)
        mark(slice(span.start, span.end), OUTSIDE, span.allowed & {OUTSIDE})
    allowed[~allowed.any(1)] = True  # a type the model does not have: nothing is known there
    return allowed


def epoch_texts(corpora: Sequence[Corpus], rng: random.Random) -> list[TrainingText]:
    """This epoch's training texts: each corpus's epoch_share of its texts, drawn afresh."""
    out: list[TrainingText] = []
    for corpus in corpora:
        if corpus.epoch_share >= 1.0:
            out.extend(corpus.texts)
        else:
            out.extend(rng.sample(corpus.texts, max(1, round(corpus.epoch_share * len(corpus.texts)))))
    return out
