"""SpanBERT-style pretraining (tagger.pretraining): span masking, and a resumable run on a tiny encoder."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from tagger.encoders import packaged_minilm_dir
from tagger.pretraining import PretrainingArgs, make_batch, mask_spans, pretrain

TWEETS = [w.split() for w in (
    "RT @nasa : Curiosity rover finds ancient streambed on Mars",
    "watching the Lakers game tonight with Kobe fans",
    "new iPhone launch in Cupertino next week #Apple",
    "Taylor Swift announces tour dates for London and Paris",
    "cannot believe the Giants lost again smh",
    "reading Harry Potter for the fifth time lol",
)]


def test_masked_spans_are_whole_words_apart_and_about_the_ratio():
    # [CLS] w0 w0 w1 w2 ... [SEP]: word 0 has two pieces.
    word_ids = [None, 0, 0, *range(1, 40), None]
    for seed in range(20):
        spans = mask_spans(word_ids, np.random.default_rng(seed), ratio=0.15, p=0.2, max_span=10)
        masked = [t for s in spans for t in range(s.start, s.end)]
        assert len(masked) == len(set(masked))
        assert 6 <= len(masked) <= 6 + 3  # 15% of 41 pieces, one span's overshoot allowed
        for s in spans:
            assert word_ids[s.start - 1] != word_ids[s.start]  # starts at a word's first piece
            assert s.end < len(word_ids) and word_ids[s.end] != word_ids[s.end - 1]  # ends after a word
        for a, b in zip(spans, spans[1:]):
            assert b.start > a.end  # an unmasked token between two spans: each has its boundaries


def test_a_batch_masks_and_keeps_the_targets():
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_dir()), local_files_only=True)
    args = PretrainingArgs(texts=TWEETS, output="unused")
    batch = make_batch(tokenizer, TWEETS, np.random.default_rng(0), args, tokenizer.vocab_size)
    original = tokenizer(TWEETS, is_split_into_words=True, padding=True, return_tensors="pt")["input_ids"]
    rows, cols = batch["masked_row"], batch["masked_col"]
    assert len(rows) > 0
    assert torch.equal(batch["targets"], original[rows, cols])
    assert (batch["left"] < cols).all() and (batch["right"] > cols).all()
    # Outside the masked positions the input is untouched.
    unmasked = torch.ones_like(original, dtype=torch.bool)
    unmasked[rows, cols] = False
    assert torch.equal(batch["input_ids"][unmasked], original[unmasked])


@pytest.fixture()
def tiny_encoder(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_dir()), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    directory = tmp_path / "tiny-encoder"
    BertModel(config, add_pooling_layer=False).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def test_resumed_pretraining_matches_an_unbroken_run(tmp_path, tiny_encoder):
    common = dict(texts=TWEETS, encoder=str(tiny_encoder), steps=4, batch_size=3, save_every=2, seed=3)
    whole = pretrain(PretrainingArgs(output=str(tmp_path / "a"), **common))
    assert pretrain(PretrainingArgs(output=str(tmp_path / "b"), stop_after_steps=2, **common)) is None
    state = tmp_path / "b" / "resume" / "state.pt"
    assert torch.load(state, weights_only=False)["step"] == 2
    with pytest.raises(ValueError, match="these differ: seed"):
        pretrain(PretrainingArgs(output=str(tmp_path / "b"), resume=True, **(common | {"seed": 4})))
    resumed = pretrain(PretrainingArgs(output=str(tmp_path / "b"), resume=True, **common))
    a = AutoModel.from_pretrained(str(whole), local_files_only=True, add_pooling_layer=False)
    b = AutoModel.from_pretrained(str(resumed), local_files_only=True, add_pooling_layer=False)
    for (name, wa), (_, wb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(wa, wb), name
    losses = torch.load(state, weights_only=False)["losses"]
    assert len(losses) == 4 and all(math.isfinite(m) and math.isfinite(s) for m, s in losses)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        pretrain(PretrainingArgs(output=str(tmp_path / "c"), resume=True, **common))
