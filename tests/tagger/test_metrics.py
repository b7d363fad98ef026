"""Entity metrics: hand-computed scores and conlleval's reading of IOB1-style tags."""
from __future__ import annotations

import pytest

from tagger.conll import EntitySpan, spans_from_iob2, to_iob2
from tagger.metrics import EntityScores, TypeScore, score_entities


def test_hand_computed_example() -> None:
    gold = [
        {(0, 2, "person"), (3, 4, "geo-loc")},
        {(1, 3, "company")},
        set(),
        {(0, 1, "person"), (2, 3, "person")},
    ]
    predicted = [
        {(0, 2, "person"), (3, 4, "company")},  # right; right span, wrong type
        {(1, 2, "company")},  # wrong boundary
        {(4, 5, "movie")},  # spurious, a type gold never has
        {(0, 1, "person"), (2, 3, "person")},  # both right
    ]
    scores = score_entities(gold, predicted)
    # tp = 3, predicted = 6, gold = 5 -> P = 1/2, R = 3/5, F1 = 2PR/(P+R) = 0.6/1.1 = 6/11
    assert (scores.true_positives, scores.predicted, scores.gold) == (3, 6, 5)
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(0.6)
    assert scores.f1 == pytest.approx(6 / 11)
    assert scores.per_type == {
        "company": TypeScore(0.0, 0.0, 0.0, 1),  # 0 tp of 2 predicted, 1 gold
        "geo-loc": TypeScore(0.0, 0.0, 0.0, 1),
        "movie": TypeScore(0.0, 0.0, 0.0, 0),
        "person": TypeScore(1.0, 1.0, 1.0, 3),
    }


def test_unequal_precision_and_recall() -> None:
    gold = [{(0, 1, "a"), (1, 2, "a"), (2, 3, "b"), (3, 4, "b")}]
    predicted = [{(0, 1, "a"), (2, 3, "b"), (3, 4, "a")}]
    s = score_entities(gold, predicted)
    # tp = 2, predicted = 3, gold = 4: P = 2/3, R = 1/2, F1 = 2PR/(P+R) = 4/7
    assert (s.precision, s.recall, s.f1) == pytest.approx((2 / 3, 1 / 2, 4 / 7))
    assert s.per_type["a"].precision == pytest.approx(1 / 2)
    assert s.per_type["a"].recall == pytest.approx(1 / 2)
    assert s.per_type["b"] == TypeScore(pytest.approx(1.0), pytest.approx(1 / 2), pytest.approx(2 / 3), 2)


def test_zero_division_gives_zero() -> None:
    empty = score_entities([set(), set()], [set(), set()])
    assert (empty.precision, empty.recall, empty.f1, empty.per_type) == (0.0, 0.0, 0.0, {})
    nothing_predicted = score_entities([{(0, 1, "x")}], [set()])
    assert (nothing_predicted.precision, nothing_predicted.recall, nothing_predicted.f1) == (0.0, 0.0, 0.0)
    assert score_entities([], []) == EntityScores(0.0, 0.0, 0.0, {}, 0, 0, 0)


def test_entity_spans_lists_and_tuples_are_interchangeable() -> None:
    gold = [[EntitySpan(0, 2, "person"), EntitySpan(0, 2, "person")]]  # duplicate counts once
    predicted = [[(0, 2, "person")]]
    s = score_entities(gold, predicted)
    assert (s.true_positives, s.predicted, s.gold, s.f1) == (1, 1, 1, 1.0)


def test_misaligned_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        score_entities([set(), set()], [set()])


def test_conlleval_semantics_for_i_after_o() -> None:
    # conlleval reads an I- tag after O (or after another type) as the start of an
    # entity, which is how IOB1 output from a tagger gets scored.
    gold_tags = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "I-ORG"]
    pred_tags = ["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "O", "I-ORG"]
    pred_spans = spans_from_iob2(to_iob2(pred_tags, "IOB1"))
    assert pred_spans == spans_from_iob2(to_iob2(pred_tags, "IOB2")) == [
        EntitySpan(0, 2, "PER"),
        EntitySpan(3, 5, "LOC"),
        EntitySpan(6, 7, "ORG"),
    ]
    s = score_entities([spans_from_iob2(gold_tags)], [pred_spans])
    # conlleval: found 3 phrases, 3 gold phrases, 1 correct -> P = R = F1 = 33.33%
    assert (s.true_positives, s.predicted, s.gold) == (1, 3, 3)
    assert (s.precision, s.recall, s.f1) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert s.per_type["PER"].f1 == 1.0 and s.per_type["LOC"].f1 == 0.0 and s.per_type["ORG"].f1 == 0.0


def test_to_dict_shape() -> None:
    d = score_entities([{(0, 1, "x")}], [{(0, 1, "x"), (1, 2, "y")}]).to_dict()
    assert d == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "per_type": {
            "x": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
            "y": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        },
    }
