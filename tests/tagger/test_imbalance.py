"""Type weights for rare entity types, and a training run that uses them (tiny model)."""
from __future__ import annotations

import logging

import pytest

from tagger.corpora import GoldSpan, TrainingText
from tagger.imbalance import type_counts, type_weights
from tagger.trainer import TrainingArgs, train
from tests.fixtures.tiny_model import make_tiny_model

LABELS = ["O", "movie", "person", "tvshow"]


def _text(*allowed: frozenset[str]) -> TrainingText:
    return TrainingText(words=["w"] * 10, corpus="t", outside=frozenset({"O"}),
                        spans=[GoldSpan(i, i + 1, a) for i, a in enumerate(allowed)])


def test_counts_only_spans_of_one_known_type():
    texts = [_text(frozenset({"person"}), frozenset({"person"}), frozenset({"movie"})),
             _text(frozenset({"person"}), frozenset({"person", "movie"}), frozenset({"O", "movie"}))]
    assert type_counts(texts) == {"person": 3, "movie": 1}


def test_rare_types_weigh_more_and_spans_weigh_one_on_average():
    counts = type_counts([_text(*[frozenset({"person"})] * 3, frozenset({"movie"}))])
    weights = type_weights(counts, LABELS, power=1.0)
    # person 1 x k, movie 3 x k, with (3 * k + 1 * 3k) / 4 = 1; tvshow (never seen) as the rarest.
    assert weights == pytest.approx({"movie": 2.0, "person": 2 / 3, "tvshow": 2.0})
    half = type_weights(counts, LABELS, power=0.5)
    assert half["movie"] / half["person"] == pytest.approx(3 ** 0.5)
    assert type_weights(counts, LABELS, power=0.0) == {"movie": 1.0, "person": 1.0, "tvshow": 1.0}


def test_training_with_type_weights(tmp_path, caplog):
    data = tmp_path / "train.conll"
    data.write_text("Obama\tB-person\nwatched\tO\nFrozen\tB-movie\n\nObama\tB-person\nsaid\tO\nhi\tO\n\n"
                    "Biden\tB-person\nlaughs\tO\n\n")
    start = make_tiny_model(tmp_path / "start", labels=["movie", "person"], entity_max_length=2)
    args = TrainingArgs(train=[str(data)], output=str(tmp_path / "run"), init_model=str(start), epochs=1,
                        batch_size=2, seed=1, tune_threshold=False, class_weight_power=1.0)
    with caplog.at_level(logging.INFO, logger="tagger.trainer"):
        result = train(args)
    assert result.finished and result.losses
    assert "type weights: movie 2.00, person 0.67" in caplog.text


def test_focal_term_keeps_cross_entropy_at_zero_and_discounts_easy_spans():
    import torch
    from torch import nn

    from tagger.imbalance import focal_nll
    from tagger.trainer import span_loss

    torch.manual_seed(0)
    logits = torch.randn(1, 6, 3) * 3
    targets = torch.tensor([[0, 1, 2, 0, -100, 1]])
    allowed = torch.eye(3, dtype=torch.bool)
    weights = torch.tensor([0.5, 1.0, 2.0])
    plain = nn.CrossEntropyLoss(weight=weights)(logits[0], targets[0])
    assert span_loss(logits, targets, allowed, weights, focal_gamma=0.0) == pytest.approx(plain.item(), rel=1e-6)
    # (1 - p) ** gamma: a confident right answer loses nearly all its weight, a wrong one little.
    nll = torch.tensor([0.01, 3.0])
    scaled = focal_nll(nll, 2.0) / nll
    assert scaled[0] < 1e-4 and scaled[1] > 0.9
    assert span_loss(logits, targets, allowed, weights, focal_gamma=2.0) < plain


def test_training_with_the_focal_term(tmp_path):
    data = tmp_path / "train.conll"
    data.write_text("Obama\tB-person\nwatched\tO\nFrozen\tB-movie\n\nBiden\tB-person\nlaughs\tO\n\n")
    start = make_tiny_model(tmp_path / "start", labels=["movie", "person"], entity_max_length=2)
    runs = {}
    for gamma in (0.0, 2.0):
        args = TrainingArgs(train=[str(data)], output=str(tmp_path / f"run{gamma}"), init_model=str(start),
                            epochs=1, batch_size=2, seed=1, tune_threshold=False, focal_gamma=gamma)
        runs[gamma] = train(args)
    assert runs[2.0].finished and runs[2.0].losses
    # Same batches, same start: only the loss differs, and the focal one is smaller.
    assert runs[2.0].losses[0] < runs[0.0].losses[0]
