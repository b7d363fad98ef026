"""The span-marker model on a tiny random BERT: shapes, masks, decoding, save/load, raw text."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tagger.collator import IGNORE_INDEX, SpanMarkerCollator
from tagger.decoding import greedy_decode
from tagger.inference import NerTagger
from tagger.modeling import SpanMarkerModel
from tests.fixtures.tiny_model import build_tiny_model, make_tiny_model
from tagger.tokenizer import POSITION_OFFSET, candidate_spans


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(("person", "geo-loc"), entity_max_length=2, marker_max_length=4)


def test_candidate_spans_follow_span_marker_order():
    assert candidate_spans(3, 2).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]
    assert candidate_spans(0, 8).shape == (0, 2)
    # every span up to the cap, nothing longer
    spans = candidate_spans(10, 4)
    assert len(spans) == 10 + 9 + 8 + 7
    assert ((spans[:, 1] - spans[:, 0]) <= 4).all()


def test_encoding_positions_and_passes(tiny):
    _, tok = tiny
    [enc] = tok.encode([["hello", "tweetnerification", "!"]])
    ids = tok.tokenizer.convert_ids_to_tokens(enc.input_ids.tolist())
    assert ids[0] == "[CLS]" and ids[-1] == "[SEP]"
    # each word's first and last subword; "tweetnerification" is split into several pieces
    assert enc.word_first_token[0] == 1 and enc.word_last_token[0] == 1
    assert enc.word_last_token[1] > enc.word_first_token[1] == 2
    assert enc.word_first_token[2] == enc.word_last_token[1] + 1
    passes = tok.passes(0, enc)
    # 5 spans with entity_max_length=2, cut into passes of marker_max_length=4
    assert [p.num_spans for p in passes] == [4, 1]
    assert passes[1].first_span == 4
    spans = candidate_spans(3, 2)
    starts = np.concatenate([p.start_positions for p in passes])
    ends = np.concatenate([p.end_positions for p in passes])
    assert starts.tolist() == enc.word_first_token[spans[:, 0]].tolist()
    assert ends.tolist() == enc.word_last_token[spans[:, 1] - 1].tolist()


def test_collator_layout_positions_and_mask(tiny):
    _, tok = tiny
    encs = tok.encode([["a", "b", "c"], ["d"]])
    rows = tok.passes(0, encs[0])[:1] + tok.passes(1, encs[1])
    # row 0: 5 text tokens, 4 spans; row 1: 3 text tokens, 1 span
    batch = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id)(rows)
    T, S = batch.text_length, batch.marker_length
    assert (T, S) == (5, 4)
    assert batch.input_ids.shape == (2, T + 2 * S)
    ids = batch.input_ids
    assert ids[0, T : T + 4].tolist() == [tok.start_marker_id] * 4
    assert ids[0, T + S : T + S + 4].tolist() == [tok.end_marker_id] * 4
    assert ids[1, 3:T].tolist() == [tok.pad_token_id] * 2
    assert ids[1, T + 1 : T + S].tolist() == [tok.pad_token_id] * 3
    # positions: text 0..n-1, markers at their boundary token, all shifted by 2
    assert batch.position_ids[0, :T].tolist() == [p + POSITION_OFFSET for p in range(5)]
    # spans (0,1),(0,2),(1,2),(1,3) over tokens [CLS] a b c [SEP] -> words at tokens 1,2,3
    assert (batch.position_ids[0, T : T + 4] - POSITION_OFFSET).tolist() == [1, 1, 2, 2]
    assert (batch.position_ids[0, T + S : T + S + 4] - POSITION_OFFSET).tolist() == [1, 2, 2, 3]

    m = batch.attention_mask[:, 0]
    assert m.dtype == torch.bool and m.shape == (2, T + 2 * S, T + 2 * S)
    text = slice(0, T)
    # text sees text only
    assert m[0, text, text].all() and not m[0, text, T:].any()
    # start marker k sees the text, itself and its end marker, nothing else
    for k in range(4):
        row = m[0, T + k]
        expected = torch.zeros(T + 2 * S, dtype=torch.bool)
        expected[:T] = True
        expected[T + k] = expected[T + S + k] = True
        assert torch.equal(row, expected), k
        assert torch.equal(m[0, T + S + k], expected), k
    # row 1: 3 real text tokens; its padding positions see only themselves
    assert m[1, :3, :3].all() and not m[1, :3, 3:].any()
    for pad in (3, 4, T + 1, T + S + 1):
        assert m[1, pad].sum() == 1 and m[1, pad, pad]


def test_fixed_padding_shapes(tiny):
    _, tok = tiny
    [enc] = tok.encode([["a", "b"]])
    batch = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id,
                               fixed_text_length=256, fixed_marker_length=128)(tok.passes(0, enc))
    assert batch.input_ids.shape == (1, 256 + 2 * 128)


def test_training_labels_are_padded_with_ignore_index(tiny):
    _, tok = tiny
    encs = tok.encode([["a", "b", "c"], ["d"]])
    labels0 = tok.span_labels(encs[0], [(1, 3, 2)])
    assert labels0.tolist() == [0, 0, 0, 2, 0]
    rows = tok.passes(0, encs[0], labels0) + tok.passes(1, encs[1], tok.span_labels(encs[1], []))
    batch = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id)(rows)
    assert batch.labels.tolist() == [[0, 0, 0, 2], [0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
                                     [0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]


def test_dynamic_fixed_and_multipass_agree(tiny):
    model, tok = tiny
    sentences = [["barack", "obama", "visits", "paris", "today"], ["hi"], ["new", "york", "city", "rocks"]]
    dynamic = NerTagger(model, tok, device="cpu", precision="fp32")
    fixed = NerTagger(model, tok, device="cpu", precision="fp32", fixed_padding=True, max_batch_rows=2)
    a, b = dynamic.predict_words(sentences), fixed.predict_words(sentences)
    assert [[(e.word_start, e.word_end, e.label) for e in s] for s in a] == \
           [[(e.word_start, e.word_end, e.label) for e in s] for s in b]
    for sa, sb in zip(a, b):
        for ea, eb in zip(sa, sb):
            assert abs(ea.score - eb.score) < 1e-5
    # A marker never sees other markers, so how spans are split into passes cannot matter.
    encs = tok.encode(sentences)
    collate = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id)
    with torch.inference_mode():
        one = model(collate(tok.passes(0, encs[0], markers_per_pass=100)))[0]
        split = torch.cat([model(collate([r]))[0] for r in tok.passes(0, encs[0], markers_per_pass=3)])
    assert torch.allclose(one, split, atol=1e-5)


def test_greedy_decode_never_overlaps_and_prefers_high_scores():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 15))
        spans = candidate_spans(n, 4)
        scores = rng.random(len(spans)).astype(np.float32)
        labels = rng.integers(0, 3, len(spans))
        chosen = greedy_decode(spans, scores, labels)
        covered = np.zeros(n, dtype=int)
        for c in chosen:
            covered[c.start : c.end] += 1
            assert c.label_id != 0
        assert covered.max(initial=0) <= 1
        assert [c.start for c in chosen] == sorted(c.start for c in chosen)
        # greedy: the best non-O span is always taken
        nonzero = np.flatnonzero(labels)
        if len(nonzero):
            best = nonzero[np.argmax(scores[nonzero])]
            assert (int(spans[best, 0]), int(spans[best, 1])) in {(c.start, c.end) for c in chosen}


def test_save_load_round_trip_is_bit_for_bit(tmp_path):
    directory = make_tiny_model(tmp_path / "m", labels=("person", "product"), seed=3)
    model, tok = SpanMarkerModel.from_pretrained(directory)
    model.save_pretrained(tmp_path / "again", tok)
    again, tok2 = SpanMarkerModel.from_pretrained(tmp_path / "again")
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.config.labels == ["O", "person", "product"]
    assert len(tok2) == len(tok) and tok2.start_marker_id == tok.start_marker_id
    texts = ["Taylor Swift plays at Madison Square Garden tonight #nyc", "nothing here"]
    t1 = NerTagger(model, tok, device="cpu", precision="fp32").predict(texts)
    t2 = NerTagger(again, tok2, device="cpu", precision="fp32").predict(texts)
    assert t1 == t2
    # the embedding matrix is padded to a multiple of 8 after adding the two markers
    assert model.encoder.get_input_embeddings().weight.shape[0] % 8 == 0


def test_raw_text_offsets_and_edge_cases(tmp_path, caplog):
    tagger = NerTagger.load(make_tiny_model(tmp_path / "m"), device="cpu", precision="fp32")
    texts = [
        "RT @user: Barack Obama landed in #Paris 🇫🇷 https://t.co/xyz!!",
        "",
        "   \t ",
        "🎉🎉🔥",
        "zero\u2063width\u2063joiners here",
        "Mixed скрипты 中文 and العربية text",
        "word " * 70,  # 350 characters
    ]
    results = tagger.predict(texts)
    assert len(results) == len(texts)
    assert results[1] == [] and results[2] == []
    for text, entities in zip(texts, results):
        for e in entities:
            assert text[e.start : e.end] == e.text and e.text.strip() == e.text
            assert "\u2063" not in e.text or " " in e.text  # invisible separators never start/end a mention
            assert 0 <= e.score <= 1
        spans = sorted((e.start, e.end) for e in entities)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # text longer than the model window: tagged up to the window, with a warning that counts the rest
    with caplog.at_level(logging.WARNING, logger="tagger.inference"):
        [entities] = tagger.predict(["tok " * 600])
    assert "not tagged" in caplog.text
    assert all(e.end <= 600 * 4 for e in entities)
    assert tagger.stats.truncated_words > 0


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_fast_precisions_run_on_cpu(tmp_path, precision):
    tagger = NerTagger.load(make_tiny_model(tmp_path / "m"), device="cpu", precision=precision)
    [entities] = tagger.predict(["Barack Obama visits Paris"])
    for e in entities:
        assert "Barack Obama visits Paris"[e.start : e.end] == e.text


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        SpanMarkerModel.from_pretrained(tmp_path)


def test_entity_threshold_trades_precision_for_recall(tmp_path):
    from tagger.calibration import best_threshold, sweep_thresholds
    from tagger.conll import Sentence

    directory = make_tiny_model(tmp_path / "m", seed=5)
    tagger = NerTagger.load(directory, device="cpu", precision="fp32")
    words = ["barack", "obama", "visits", "paris", "and", "new", "york", "today"]
    [(spans, probs)] = tagger.span_probabilities([words])
    argmax = tagger.decode(spans, probs, None)
    low = tagger.decode(spans, probs, 0.0)  # every span's best type qualifies
    high = tagger.decode(spans, probs, 1.01)  # nothing qualifies
    assert high == []
    assert len(low) >= 1 and sum(e - s for s, e, _, _ in low) >= sum(e - s for s, e, _, _ in argmax)
    # the model's config carries the tuned threshold, and predict() honours it
    tagger.config.tweetner["entity_threshold"] = 1.01
    assert tagger.predict_words([words]) == [[]]
    sentence = Sentence(words=words, tags=["B-person", "I-person", "O", "B-geo-loc", "O", "B-geo-loc",
                                           "I-geo-loc", "O"], source="t:1")
    results = sweep_thresholds(tagger, [sentence], grid=(0.0, 0.5, 1.01))
    assert [r.threshold for r in results] == [None, 0.0, 0.5, 1.01]
    assert results[-1].recall == 0.0
    chosen = best_threshold(results)
    assert chosen.f1 == max(r.f1 for r in results) or chosen.threshold is None
