"""The candidate-span filter: tiny cases for each rule, every gold entity of the data it was derived
from (where ../shared/data exists), and the tagger's filtered mode."""
from __future__ import annotations

import numpy as np
import pytest

from tagger.conll import read_conll, spans_from_iob2
from tagger.inference import NerTagger
from tagger.span_filter import keep_mask, keep_span
from tagger.tokenizer import candidate_spans
from tests.fixtures.tiny_model import build_tiny_model


@pytest.mark.parametrize("span", [
    "Barack Obama", "U . S .", "@Cromwell Field", "Las Vegas , NV", "Mockingjay : Part 1", "AC / DC",
    "Who ' s on first ?", "Hello !", "NY )", "# Garyjohnson", "the Elevator Company", "Sotheby ' s",
    "St . Louis", ".", "'\"'", "http://t.co/x", "@user", "iphone 6", "we", "pro am",
    "Bank of America", "Gone with the Wind", "if you think i 'm sexy", "Tom &amp; Jerry", "McDonald 's",
])
def test_keeps_entities_seen_in_gold(span):
    assert keep_span(span.split(" "))


@pytest.mark.parametrize("span", [
    "visit http://t.co/x",  # a URL inside a longer span
    "http://t.co/x today",
    "RT @user",  # an @mention that does not start the span
    "@user : Hi",  # an @mention followed by punctuation
    ", Paris",  # starts on a comma
    "Paris ,",  # ends on a comma
    "win , paris",  # a clause break between lower-case words
    "win . Next",  # a sentence end
    "!",  # punctuation alone
    "the",  # a function word alone
    "of Paris",  # starts on a function word that never starts one
    "Paris and",  # ends on one
    "Paris is my city",  # a closed-class word that no entity has inside ("my")
    "Trump said that Obama",  # "that"
    "'s Paris",  # starts on a clitic
    "Tom &amp;",  # ends on an ampersand
    "&amp; Jerry",  # starts on one
])
def test_drops_spans_no_entity_has(span):
    assert not keep_span(span.split(" "))


def test_mask_over_a_sentence_matches_the_rule_per_span():
    words = "RT @user : Loving Las Vegas , NV so much ! http://t.co/abc #vegas".split(" ")
    spans = candidate_spans(len(words), 6)
    mask = keep_mask(words, spans)
    assert mask.tolist() == [keep_span(words[s:e]) for s, e in spans]
    kept = {" ".join(words[s:e]) for (s, e), k in zip(spans, mask) if k}
    assert {"Las Vegas , NV", "Las Vegas", "#vegas", "@user", "http://t.co/abc"} <= kept
    assert "RT @user" not in kept and "so much" not in kept and "! http://t.co/abc" not in kept
    assert mask.sum() < len(spans) / 2
    assert keep_mask(words, np.zeros((0, 2), dtype=np.int64)).shape == (0,)
    assert not keep_span([])


GOLD_FILES = ["wnut16/train.conll", "wnut16/dev.conll", "wnut15/dev_2015.conll", "wnut17/train.conll",
              "wnut17/dev.conll", "btc/a.conll", "btc/b.conll", "btc/e.conll", "btc/f.conll", "btc/g.conll",
              "btc/h.conll", "tweebank/train.conll", "tweebank/dev.conll", "tweebank/test.conll"]


def test_no_gold_entity_of_the_training_and_dev_data_is_dropped(shared_data):
    """The filter's promise, on the data its rules were derived from (entities up to 6 words, the
    shipped model's entity_max_length; BTC's @mentions are trained as outside, so not counted)."""
    checked, lost = 0, []
    for name in GOLD_FILES:
        path = shared_data / name
        if not path.is_file():
            continue
        sentences, _ = read_conll(path)
        for sentence in sentences:
            spans = [s for s in spans_from_iob2(sentence.tags) if s.end - s.start <= 6
                     and not (name.startswith("btc/") and sentence.words[s.start].startswith("@"))]
            if not spans:
                continue
            mask = keep_mask(sentence.words, np.array([[s.start, s.end] for s in spans], dtype=np.int64))
            checked += len(spans)
            lost += [f"{name}: {' '.join(sentence.words[s.start:s.end])}" for s, k in zip(spans, mask) if not k]
    if not checked:
        pytest.skip("none of the gold files is present")
    assert not lost, lost[:20]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(("person", "geo-loc"), entity_max_length=3, marker_max_length=4)


def test_filtered_mode_scores_kept_spans_exactly_as_the_full_mode(tiny):
    model, tok = tiny
    sentences = [["RT", "@user", ":", "barack", "obama", "in", "paris", "!", "http://t.co/x"], ["hi", "."], ["!"]]
    full = NerTagger(model, tok, device="cpu", precision="fp32", span_filter=False)
    filtered = NerTagger(model, tok, device="cpu", precision="fp32", span_filter=True)
    for words, (all_spans, all_probs), (spans, probs) in zip(
            sentences, full.span_probabilities(sentences), filtered.span_probabilities(sentences)):
        mask = keep_mask(words, all_spans)
        assert spans.tolist() == all_spans[mask].tolist()
        np.testing.assert_allclose(probs, all_probs[mask], atol=1e-5)
    assert filtered.stats.positions < full.stats.positions


def test_the_exact_mode_leaves_the_filter_off(tiny):
    model, tok = tiny
    assert not NerTagger(model, tok, device="cpu", precision="fp32").span_filter
    assert not NerTagger(model, tok, device="cpu", precision="bf16", fixed_padding=True).span_filter
    assert NerTagger(model, tok, device="cpu", precision="bf16").span_filter
    assert NerTagger(model, tok, device="cpu").span_filter  # the default mode, whichever precision
