"""Collating the next batch on a host thread while the model runs the current one (the overlap a
GPU needs; tested here on the CPU) changes nothing about the results."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from tagger.inference import NerTagger
from tests.fixtures.tiny_model import build_tiny_model

SENTENCES = [["barack", "obama", "visits", "paris", "today"], ["hi"], ["new", "york", "city", "rocks"],
             ["a", "b"], ["one", "two", "three", "four", "five", "six", "seven"]] * 6


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(("person", "geo-loc"), entity_max_length=3, marker_max_length=6)


def test_prefetch_gives_the_same_probabilities_from_a_collating_thread(tiny, monkeypatch):
    model, tok = tiny
    # A small position budget: many batches, so every batch but the first is collated ahead.
    plain = NerTagger(model, tok, device="cpu", precision="fp32", max_batch_positions=256, prefetch=False)
    ahead = NerTagger(model, tok, device="cpu", precision="fp32", max_batch_positions=256, prefetch=True)
    threads: list[str] = []
    collate = ahead._collate

    def recording(rows):
        threads.append(threading.current_thread().name)
        return collate(rows)

    monkeypatch.setattr(ahead, "_collate", recording)
    expected = plain.span_probabilities(SENTENCES)
    got = ahead.span_probabilities(SENTENCES)
    assert plain.stats.batches == ahead.stats.batches > 3
    assert len(threads) == ahead.stats.batches
    assert all(name.startswith("tagger-collate") for name in threads)
    for (spans_a, probs_a), (spans_b, probs_b) in zip(expected, got):
        np.testing.assert_array_equal(spans_a, spans_b)
        np.testing.assert_array_equal(probs_a, probs_b)
    assert ahead.predict_words(SENTENCES[:5]) == plain.predict_words(SENTENCES[:5])


def test_prefetch_defaults_off_on_the_cpu(tiny):
    model, tok = tiny
    assert NerTagger(model, tok, device="cpu").prefetch is False
