"""Training data with label maps (partial labels), word shapes and resumable training, on tiny models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tagger import shapes
from tagger.corpora import CorpusError, drop_overlap, load_corpus, model_types, parse_spec
from tagger.conll import read_conll
from tagger.inference import NerTagger
from tagger.modeling import SpanMarkerModel
from tagger.trainer import TargetTable, TrainingArgs, prepare_sentences, span_loss, train
from tests.fixtures.tiny_model import build_tiny_model, make_tiny_model

PARTIAL = """Obama\tB-PER
visits\tO
Paris\tB-LOC
with\tO
@nasa\tB-ORG
and\tO
Apple\tB-ORG

#Oscars\tB-MISC
tonight\tO
"""

BTC_MAP = {
    "name": "btc-like",
    "labels": {"PER": ["person"], "LOC": ["geo-loc"], "ORG": ["company", "other"]},
    "outside": ["O", "product", "other"],
    "drop_mentions": True,
}


@pytest.fixture()
def partial_corpus(tmp_path):
    data = tmp_path / "partial.conll"
    data.write_text(PARTIAL)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(BTC_MAP))
    return f"{data}:{mapping}"


def test_a_label_map_maps_types_to_sets_and_drops_mentions(partial_corpus):
    corpus = load_corpus(partial_corpus)
    first, second = corpus.texts
    spans = {(s.start, s.end): s.allowed for s in first.spans}
    assert spans[(0, 1)] == {"person"} and spans[(2, 3)] == {"geo-loc"}
    assert spans[(4, 5)] == {"O"}, "a labelled @mention is trained as outside"
    assert spans[(6, 7)] == {"company", "other"}, "ORG is 'some entity', never forced to one type"
    assert first.outside == {"O", "product", "other"}
    assert corpus.dropped_mentions == 1
    assert corpus.unmapped == {"MISC": 1} and second.spans == [], "an unmapped label is not trained at all"
    assert model_types([corpus]) == ["company", "geo-loc", "other", "person", "product"]


def test_spec_parsing_and_clear_errors(tmp_path, partial_corpus):
    path, mapping = parse_spec(partial_corpus)
    assert path.endswith("partial.conll") and mapping.endswith("map.json")
    assert parse_spec("plain.conll") == ("plain.conll", None)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"labels": {"PER": []}}))
    with pytest.raises(CorpusError, match="non-empty list"):
        load_corpus(f"{path}:{bad}")
    no_o = tmp_path / "no_o.json"
    no_o.write_text(json.dumps({"labels": {"PER": "person"}, "outside": ["product"]}))
    with pytest.raises(CorpusError, match="must include 'O'"):
        load_corpus(f"{path}:{no_o}")


def test_training_texts_that_repeat_a_dev_tweet_are_dropped(tmp_path, partial_corpus):
    dev = tmp_path / "dev.conll"
    dev.write_text("RT\tO\n@someone\tO\nobama\tB-person\nvisits\tO\nparis\tO\nwith\tO\n@x\tO\nand\tO\napple\tO\n\n")
    corpus = load_corpus(partial_corpus)
    kept, dropped = drop_overlap(corpus.texts, read_conll(dev)[0])
    assert dropped == 1 and kept == corpus.texts[1:]


def test_set_targets_mask_the_loss_to_the_allowed_labels(partial_corpus):
    model, tokenizer = build_tiny_model(("company", "geo-loc", "other", "person", "product"), entity_max_length=2)
    targets = TargetTable(model.config.label2id)
    prepared, unreachable = prepare_sentences(tokenizer, load_corpus(partial_corpus).texts, targets)
    assert unreachable == 0
    table = targets.allowed_matrix()
    first = prepared[0].span_labels
    # span (0, 1) "Obama" is the first candidate: a single label; every non-gold span is the O-set
    assert first[0] == model.config.label2id["person"]
    o_set = table[first[1]]
    assert o_set.tolist() == [lbl in ("O", "product", "other") for lbl in model.config.labels]
    # the loss of a set target is -log of the probability mass on the set
    logits = torch.tensor([[[2.0, 0.0, 1.0, -1.0, 0.5, 0.0]]])
    probs = logits.softmax(-1)[0, 0]
    got = span_loss(logits, torch.tensor([[int(first[1])]]), table, torch.ones(len(table)))
    want = -torch.log(probs[o_set].sum())
    assert torch.isclose(got, want)
    # and for a single label it is the cross-entropy
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor([3]))
    assert torch.isclose(span_loss(logits, torch.tensor([[3]]), table, torch.ones(len(table))), ce)


def test_word_shapes():
    got = [shapes.word_shape(w) for w in ("apple", "Apple", "APPLE", "iPhone", "A", "2016", "@apple", "#apple",
                                          "#Apple", "https://t.co/x", "!!", "😀")]
    assert got == [shapes.LOWER, shapes.TITLE, shapes.UPPER, shapes.MIXED, shapes.LETTER_UPPER, shapes.DIGITS,
                   shapes.MENTION, shapes.HASHTAG_LOWER, shapes.HASHTAG_CASED, shapes.URL, shapes.PUNCT, shapes.OTHER]
    assert shapes.encoder_text("#Apple") == "Apple" and shapes.encoder_text("#") == "#"


def test_a_model_with_word_shapes_round_trips_and_sees_case(tmp_path):
    model, tokenizer = build_tiny_model(("person",), entity_max_length=2)
    model.add_word_shapes(4)
    model.config.tweetner["strip_hashtags"] = True
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    model.save_pretrained(tmp_path / "shaped", tokenizer)
    loaded, loaded_tokenizer = SpanMarkerModel.from_pretrained(tmp_path / "shaped")
    assert loaded.config.word_shape_dim == 4 and loaded.config.strip_hashtags
    assert torch.equal(loaded.shape_embedding.weight, model.shape_embedding.weight)
    tagger = NerTagger(loaded, loaded_tokenizer, device="cpu", precision="fp32")
    lower, cased = tagger.span_probabilities([["obama", "wins"], ["Obama", "wins"]])
    assert not np.allclose(lower[1], cased[1]), "the uncased encoder reads the same tokens; only shapes differ"
    # hashtags: the encoder reads the word without '#', the span keeps its text
    encoded = loaded_tokenizer.encode([["#Obama"], ["Obama"]])
    assert encoded[0].input_ids.tolist() == encoded[1].input_ids.tolist()
    assert encoded[0].word_shapes.tolist() == [shapes.HASHTAG_CASED]
    mentions = tagger.predict(["#Obama wins"])[0]
    for m in mentions:
        assert "#Obama wins"[m.start : m.end] == m.text and not m.text.startswith("Obama")


def test_adding_shapes_to_a_trained_model_keeps_its_predictions(tmp_path):
    model, tokenizer = build_tiny_model(("person", "company"), entity_max_length=3)
    texts = [["Obama", "visits", "#Apple", "today"], ["RT", "@x", ":", "hello", "WORLD"]]
    before = [p for _, p in NerTagger(model, tokenizer, device="cpu", precision="fp32").span_probabilities(texts)]
    model.add_word_shapes(8)
    model.config.tweetner["word_shape_dim"] = 8
    shaped_tokenizer = type(tokenizer)(tokenizer.tokenizer, model.config)
    after = [p for _, p in NerTagger(model, shaped_tokenizer, device="cpu", precision="fp32").span_probabilities(texts)]
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-6)


def _tiny_args(tmp_path, start, data, **overrides):
    args = dict(train=[str(data)], output=str(tmp_path / "run"), init_model=str(start), epochs=3, batch_size=4,
                negative_rate=0.5, seed=5, warmup_ratio=0.0, word_shape_dim=4, tune_threshold=False)
    args.update(overrides)
    return TrainingArgs(**args)


def test_resume_gives_the_same_weights_as_an_unbroken_run(tmp_path, shared_data, partial_corpus):
    lines = (shared_data / "wnut16" / "train.conll").read_text().split("\n\n")[:12]
    data = tmp_path / "train12.conll"
    data.write_text("\n\n".join(lines) + "\n")
    labels = sorted({"company", "other", "geo-loc", "person", "product"} | {
        ln.split("\t")[1][2:] for block in lines for ln in block.splitlines()
        if "\t" in ln and ln.split("\t")[1] != "O"})
    start = make_tiny_model(tmp_path / "start", labels=labels, entity_max_length=3)
    dev = tmp_path / "dev.conll"
    dev.write_text("\n\n".join((shared_data / "wnut16" / "dev.conll").read_text().split("\n\n")[:5]) + "\n")
    common = dict(dev=str(dev), train=[str(data), partial_corpus])

    unbroken = train(_tiny_args(tmp_path / "a", start, data, **common))
    assert unbroken.finished and len(unbroken.history) == 3
    first = train(_tiny_args(tmp_path / "b", start, data, stop_after_epochs=1, **common))
    assert not first.finished and len(first.history) == 1
    with pytest.raises(ValueError, match="these differ: seed"):
        train(_tiny_args(tmp_path / "b", start, data, resume=True, seed=6, **common))
    resumed = train(_tiny_args(tmp_path / "b", start, data, resume=True, **common))
    assert resumed.finished and [h.epoch for h in resumed.history] == [1, 2, 3]
    assert resumed.losses == unbroken.losses
    a, _ = SpanMarkerModel.from_pretrained(tmp_path / "a" / "run")
    b, _ = SpanMarkerModel.from_pretrained(tmp_path / "b" / "run")
    for (name, wa), (_, wb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(wa, wb), name
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_tiny_args(tmp_path / "c", start, data, resume=True, **common))
