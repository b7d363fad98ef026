"""Several marker passes in one encoder row compute what each computes alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tagger.collator import PackedPass, SpanMarkerCollator, pack_passes
from tagger.inference import NerTagger
from tests.fixtures.tiny_model import build_tiny_model

SENTENCES = [["barack", "obama", "visits", "paris", "today"], ["hi"], ["new", "york", "city", "rocks"],
             ["a", "b"], ["one", "two", "three", "four", "five", "six", "seven"]]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(("person", "geo-loc"), entity_max_length=3, marker_max_length=6)


def test_pack_passes_fills_rows_without_losing_a_pass(tiny):
    _, tok = tiny
    rows = [r for i, e in enumerate(tok.encode(SENTENCES)) for r in tok.passes(i, e)]
    packed = pack_passes(rows, 64)
    members = [m for u in packed for m in (u.members if isinstance(u, PackedPass) else [u])]
    assert sorted(id(m) for m in members) == sorted(id(r) for r in rows)
    assert len(packed) < len(rows)
    assert pack_passes([], 64) == []


def test_packed_rows_see_only_their_own_pass(tiny):
    _, tok = tiny
    a, b = [r for i, e in enumerate(tok.encode(SENTENCES[:2])) for r in tok.passes(i, e)][:2]
    collate = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id)
    batch = collate([PackedPass.of([a, b])])
    ta, tb = len(a.input_ids), len(b.input_ids)
    mask = batch.attention_mask[0, 0]
    assert mask[:ta, :ta].all() and not mask[:ta, ta : ta + tb].any() and not mask[ta : ta + tb, :ta].any()
    T = batch.text_length
    assert batch.position_ids[0, ta : ta + tb].tolist() == (np.arange(tb) + 2).tolist()
    first_b_marker = T + a.num_spans
    assert mask[first_b_marker, ta : ta + tb].all() and not mask[first_b_marker, :ta].any()


def test_packing_gives_the_unpacked_probabilities(tiny):
    model, tok = tiny
    alone = NerTagger(model, tok, device="cpu", precision="fp32", row_capacity=0)
    packed = NerTagger(model, tok, device="cpu", precision="fp32", row_capacity=48)
    for (sa, pa), (sb, pb) in zip(alone.span_probabilities(SENTENCES), packed.span_probabilities(SENTENCES)):
        assert sa.tolist() == sb.tolist()
        np.testing.assert_allclose(pa, pb, atol=1e-5)
    assert packed.stats.batches <= alone.stats.batches
    assert NerTagger(model, tok, device="cpu", precision="fp32", fixed_padding=True).row_capacity == 0
