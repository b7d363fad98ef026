"""Unpadded marker passes (tagger.flat_encoder) compute what the padded layouts compute."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tagger.collator import SpanMarkerCollator
from tagger.flat_encoder import MarkerIndex, span_marker_attention
from tagger.inference import NerTagger
from tagger.modeling import SpanMarkerModel
from tests.fixtures.tiny_model import build_tiny_model

SENTENCES = [["barack", "obama", "visits", "paris", "today"], ["hi"], ["new", "york", "city", "rocks"],
             ["a", "b"], ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]]


def _tiny(**kwargs):
    return build_tiny_model(("person", "geo-loc"), entity_max_length=3, marker_max_length=6, **kwargs)


@pytest.mark.parametrize("span_filter", [False, True])
def test_flat_passes_give_the_padded_probabilities(span_filter):
    model, tok = _tiny()
    # One pass per row, padded to the batch's longest.
    padded = NerTagger(model, tok, device="cpu", precision="fp32", span_filter=span_filter, row_capacity=0)
    flat = NerTagger(model, tok, device="cpu", precision="fp32", span_filter=span_filter)
    assert flat.flat and not padded.flat
    for (sa, pa), (sb, pb) in zip(padded.span_probabilities(SENTENCES), flat.span_probabilities(SENTENCES)):
        assert sa.tolist() == sb.tolist()
        np.testing.assert_allclose(pa, pb, atol=1e-5)
    # The long sentence needs two passes (more candidates than marker_max_length): both are scored.
    assert flat.stats.passes > len(SENTENCES)
    assert flat.stats.positions < padded.stats.positions


def test_small_batches_split_passes_and_still_agree():
    model, tok = _tiny()
    whole = NerTagger(model, tok, device="cpu", precision="fp32")
    split = NerTagger(model, tok, device="cpu", precision="fp32", max_batch_positions=24)
    for (_, pa), (_, pb) in zip(whole.span_probabilities(SENTENCES), split.span_probabilities(SENTENCES)):
        np.testing.assert_allclose(pa, pb, atol=1e-5)
    assert split.stats.batches > whole.stats.batches == 1


def test_a_model_with_word_shapes_runs_flat_the_same():
    model, tok = _tiny()
    model.add_word_shapes(4)
    torch.nn.init.normal_(model.classifier.weight, std=0.5)  # shape columns start at zero: make them count
    padded = NerTagger(model, tok, device="cpu", precision="fp32", flat=False)
    flat = NerTagger(model, tok, device="cpu", precision="fp32")
    for (_, pa), (_, pb) in zip(padded.span_probabilities(SENTENCES), flat.span_probabilities(SENTENCES)):
        np.testing.assert_allclose(pa, pb, atol=1e-5)


def test_flat_batch_marks_each_pass_and_points_at_its_markers():
    _, tok = _tiny()
    rows = [r for i, e in enumerate(tok.encode([SENTENCES[1], SENTENCES[3]])) for r in tok.passes(i, e)]
    batch = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id).flat(rows)
    a, b = rows
    assert batch.positions == a.length + b.length
    ids = batch.input_ids
    assert (ids[batch.start_index] == tok.start_marker_id).all() and (ids[batch.end_index] == tok.end_marker_id).all()
    # Each span's markers sit where its boundary tokens are (plus the position offset).
    assert (batch.position_ids[batch.start_index] - 2).tolist() == [*a.start_positions, *b.start_positions]
    assert (batch.position_ids[batch.end_index] - 2).tolist() == [*a.end_positions, *b.end_positions]
    # Pass b occupies query grid row 1 from its first column; its text, key grid row 1.
    L, T = batch.grid_length, batch.text_keys.shape[-1]
    assert L == max(a.length, b.length) and T == max(len(a.input_ids), len(b.input_ids))
    assert batch.slots[a.length :].tolist() == list(range(L, L + b.length))
    ta, tb = len(a.input_ids), len(b.input_ids)
    assert batch.text_tokens.tolist() == [*range(ta), *range(a.length, a.length + tb)]
    assert batch.text_slots.tolist() == [*range(ta), *range(T, T + tb)]
    assert batch.text_keys[:, 0, 0].sum(-1).tolist() == [ta, tb]


def _pattern_attention(q, k, v, batch, heads, scale):
    """The SpanMarker pattern written out: a dense mask over each pass (text sees text; a marker
    sees the text, itself and its partner), plain softmax attention per pass."""
    out = torch.empty_like(q)
    offset = 0
    for t, s in zip((batch.text_keys[:, 0, 0].sum(-1)).tolist(), batch.num_spans.tolist()):
        n = t + 2 * s
        idx = torch.arange(n)
        is_text = idx < t
        pair = torch.where(is_text, -1, (idx - t) % max(s, 1))
        mask = is_text[None, :] | ((pair[:, None] == pair[None, :]) & ~is_text[:, None])
        qs, ks, vs = (x[offset : offset + n].view(n, heads, -1).transpose(0, 1) for x in (q, k, v))
        scores = (qs @ ks.transpose(-1, -2) * scale).masked_fill(~mask, float("-inf"))
        out[offset : offset + n] = (scores.softmax(-1) @ vs).transpose(0, 1).reshape(n, -1)
        offset += n
    return out


@pytest.mark.parametrize("fused", [True, False])
def test_attention_is_the_span_marker_pattern(fused):
    _, tok = _tiny()
    rows = [r for i, e in enumerate(tok.encode(SENTENCES)) for r in tok.passes(i, e)]
    batch = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id).flat(rows)
    heads, n = 4, batch.positions
    torch.manual_seed(0)
    q, k, v = (torch.randn(n, heads * 8, dtype=torch.float64 if not fused else torch.float32) for _ in range(3))
    # float64 takes the unfused path (scores written out), float32 the CPU's fused kernel.
    got = span_marker_attention(q, k, v, batch, MarkerIndex.of(batch, q.dtype), heads=heads, scale=0.3)
    want = _pattern_attention(q, k, v, batch, heads, 0.3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_encoders_with_physical_positions_keep_the_padded_layout(tmp_path):
    from tests.tagger.test_encoder_families import _checkpoint

    model, tok = SpanMarkerModel.from_pretrained(_checkpoint("mpnet", tmp_path))
    assert not model.runs_flat
    assert not NerTagger(model, tok, device="cpu", precision="fp32").flat
    with pytest.raises(ValueError, match="BERT-family"):
        NerTagger(model, tok, device="cpu", precision="fp32", flat=True)


def test_a_model_in_training_refuses_flat_batches():
    model, tok = _tiny()
    rows = [r for i, e in enumerate(tok.encode(SENTENCES[1:2])) for r in tok.passes(i, e)]
    batch = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id).flat(rows)
    assert model(batch).shape == (rows[0].num_spans, 3)
    model.train()
    with pytest.raises(ValueError, match="inference"):
        model(batch)


def test_fixed_padding_and_explicit_packing_are_not_flat():
    model, tok = _tiny()
    assert not NerTagger(model, tok, device="cpu", precision="fp32", fixed_padding=True).flat
    assert not NerTagger(model, tok, device="cpu", precision="fp32", row_capacity=48).flat


def test_int8_runs_flat_with_one_scale_per_output_channel():
    model, tok = _tiny()
    reference = NerTagger(model, tok, device="cpu", precision="fp32", span_filter=True).span_probabilities(SENTENCES)
    int8 = NerTagger(model, tok, device="cpu", precision="int8")
    assert int8.flat
    layer = int8.model.encoder.encoder.layer[0].intermediate.dense
    assert layer.weight().qscheme() == torch.per_channel_affine
    for (_, p), (_, ref) in zip(int8.span_probabilities(SENTENCES), reference):
        np.testing.assert_allclose(p, ref, atol=0.05)
