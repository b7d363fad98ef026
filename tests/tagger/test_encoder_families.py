"""span_marker compatibility per encoder family, on tiny random encoders built here.

Each checkpoint is written by our own save path (``SpanMarkerModel.from_encoder`` +
``save_pretrained``) and read back by ``tests/tagger/span_marker_reference.py``, a re-statement of
span_marker's computation with its physical layout. BERT and RoBERTa take position only from
position_ids, so any layout matches; MPNet adds a relative-position bias over physical indices, so
only span_marker's layout does. DeBERTa cannot run span_marker's mask at all (neither here nor in
span_marker). RoBERTa's byte-level BPE tokenizer is saved without ``add_prefix_space``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    DebertaV2Config,
    DebertaV2Model,
    MPNetConfig,
    MPNetModel,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizerFast,
)

from tagger.collator import SpanMarkerCollator
from tagger.configuration import SpanMarkerConfig
from tagger.encoders import packaged_minilm_dir
from tagger.inference import NerTagger
from tagger.modeling import SpanMarkerModel
from tests.tagger.span_marker_reference import ReferenceSpanMarker

LABELS = ["O", "geo-loc", "person"]
MODEL_MAX, MARKER_MAX, ENTITY_MAX = 40, 12, 4
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
SENTENCES = [
    "@SammieLynnsMom they will be at the Empire State Building in New York tomorrow".split(),
    "Super Bowl Sunday with Barack Obama".split(),
    ["ok"],
    # longer than MODEL_MAX tokens (truncated) and more spans than MARKER_MAX (several passes)
    ("word " * 50).split(),
]
CORPUS = ["watch the Super Bowl on Super Bowl Sunday", "Barack Obama visits New York City today",
          "they will be at the Empire State Building tomorrow", "ok word"] * 30


def _minilm_tokenizer():
    return AutoTokenizer.from_pretrained(str(packaged_minilm_dir()), local_files_only=True)


def _byte_level_tokenizer():
    """A RoBERTa-style tokenizer saved the way a raw encoder directory may have it: no add_prefix_space."""
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>", unk_token="<unk>", mask_token="<mask>", add_prefix_space=False)


def _bert(tok):
    return BertModel(BertConfig(vocab_size=len(tok), max_position_embeddings=128, **TINY))


def _roberta(tok):
    return RobertaModel(RobertaConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **TINY))


def _mpnet(tok):
    return MPNetModel(MPNetConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                                  **TINY))


FAMILIES = {"bert": (_minilm_tokenizer, _bert), "roberta": (_byte_level_tokenizer, _roberta),
            "mpnet": (_minilm_tokenizer, _mpnet)}


def _encoder_dir(family: str, directory: Path) -> Path:
    make_tokenizer, make_encoder = FAMILIES[family]
    torch.manual_seed(16)
    tokenizer = make_tokenizer()
    make_encoder(tokenizer).save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def _checkpoint(family: str, tmp: Path) -> Path:
    """A span_marker-format checkpoint from our own save path, with a head strong enough to tag spans."""
    model, tokenizer = SpanMarkerModel.from_encoder(_encoder_dir(family, tmp / "encoder"), LABELS,
                                                    model_max_length=MODEL_MAX, marker_max_length=MARKER_MAX,
                                                    entity_max_length=ENTITY_MAX)
    torch.manual_seed(7)
    for name, p in model.encoder.named_parameters():
        if "relative_attention_bias" in name:  # MPNet: a bias as large as a trained one, so layouts matter
            p.data.normal_(0, 1.0)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    return model.save_pretrained(tmp / "checkpoint", tokenizer)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_checkpoint(request, tmp_path_factory):
    return request.param, _checkpoint(request.param, tmp_path_factory.mktemp(request.param))


def test_exact_mode_gives_span_marker_entities(family_checkpoint):
    family, checkpoint = family_checkpoint
    reference = ReferenceSpanMarker(checkpoint)
    expected = reference.span_probabilities(SENTENCES)
    tagger = NerTagger.load(checkpoint, device="cpu", precision="fp32")
    got = tagger.span_probabilities(SENTENCES)
    assert sum(len(reference.entities(s, p)) for s, p in expected) > 3  # non-trivial outputs
    for words, (spans, probs), (ref_spans, ref_probs) in zip(SENTENCES, got, expected):
        assert [tuple(s) for s in spans.tolist()] == ref_spans
        assert np.abs(probs - ref_probs).max() < 1e-5, family
        assert reference.entities(ref_spans, probs) == reference.entities(ref_spans, ref_probs)
    assert [[(e.word_start, e.word_end, e.label) for e in found] for found in tagger.predict_words(SENTENCES)] == \
           [reference.entities(s, p) for s, p in expected]


def test_only_physical_position_encoders_need_span_marker_layout(family_checkpoint):
    """The compact layout is exact for BERT and RoBERTa and measurably wrong for MPNet."""
    family, checkpoint = family_checkpoint
    expected = ReferenceSpanMarker(checkpoint).span_probabilities(SENTENCES)
    tagger = NerTagger.load(checkpoint, device="cpu", precision="fp32")
    assert tagger.config.positions_are_physical == (family == "mpnet")
    # BERT and RoBERTa keep the compact layout, padded only to the batch (the fast default path).
    assert (tagger.collator.fixed_text_length is None) == (family != "mpnet")
    tok = tagger.tokenizer
    tagger.collator = SpanMarkerCollator(tok.pad_token_id, tok.start_marker_id, tok.end_marker_id)
    # One sentence per call: a batch that holds the longest text and the most spans would have
    # span_marker's layout by chance.
    compact = [tagger.span_probabilities([words])[0] for words in SENTENCES]
    diff = max(np.abs(p - r).max() for (_, p), (_, r) in zip(compact, expected))
    if family == "mpnet":
        assert diff > 1e-3
    else:
        assert diff < 1e-5


def test_mpnet_marker_layout_matches_span_marker(tmp_path):
    checkpoint = _checkpoint("mpnet", tmp_path)
    reference = ReferenceSpanMarker(checkpoint)
    tagger = NerTagger.load(checkpoint, device="cpu", precision="fp32")
    tok = tagger.tokenizer
    encoded = tok.encode(SENTENCES)
    ours = [row for i, enc in enumerate(encoded) for row in tok.passes(i, enc)]
    theirs = [group[1:] for words in SENTENCES for group in reference.passes(words)[1]]
    batch = tagger.collator(ours)
    ref_ids, ref_positions, ref_mask = reference.row_tensors(theirs)
    M, S, N = MODEL_MAX, MARKER_MAX, batch.span_slots
    assert (batch.text_length, batch.marker_length) == (M, S)
    assert batch.input_ids.shape[1] == M + S + N <= ref_ids.shape[1]  # only unused end-marker slots are cut
    L = batch.input_ids.shape[1]
    assert torch.equal(batch.input_ids, ref_ids[:, :L])
    assert (ref_ids[:, L:] == tok.pad_token_id).all()
    mask = batch.attention_mask[:, 0]
    for b, row in enumerate(ours):
        real = torch.zeros(L, dtype=torch.bool)  # the positions whose states are read or attended
        real[: len(row.input_ids)] = True
        real[M : M + row.num_spans] = real[M + S : M + S + row.num_spans] = True
        assert torch.equal(batch.position_ids[b, real], ref_positions[b, :L][real])
        assert torch.equal(mask[b][real], ref_mask[b, :L][real].bool())
        assert not ref_mask[b, :, L:].any()  # nothing span_marker attends was cut


@pytest.mark.parametrize("model_type, physical", [
    ("bert", False), ("roberta", False), ("xlm-roberta", False), ("distilbert", False), ("albert", False),
    ("electra", False), ("mpnet", True), ("deberta", True), ("deberta-v2", True), ("roformer", True),
])
def test_layout_is_decided_by_the_encoder_family(model_type, physical):
    config = SpanMarkerConfig(encoder={"model_type": model_type, "hidden_size": 8}, labels=LABELS)
    assert config.positions_are_physical is physical


def test_deberta_v2_cannot_run_span_markers_mask_so_it_is_refused():
    config = DebertaV2Config(vocab_size=128, max_position_embeddings=128, relative_attention=True,
                             pos_att_type=["p2c", "c2p"], type_vocab_size=0, **TINY)
    span_config = SpanMarkerConfig(encoder=config.to_dict(), labels=LABELS)
    assert span_config.positions_are_physical
    # span_marker passes its [B, L, L] mask straight to the encoder; DeBERTa's embeddings multiply by it.
    mask = torch.ones(1, 20, 20, dtype=torch.bool)
    with pytest.raises(RuntimeError):
        DebertaV2Model(config)(input_ids=torch.ones(1, 20, dtype=torch.long), attention_mask=mask)
    with pytest.raises(ValueError, match="per-row attention mask"):
        SpanMarkerModel.from_config(span_config)


def test_train_on_a_roberta_tokenizer_without_add_prefix_space_puts_the_space_back(tmp_path, capsys):
    from tweetner.cli import main

    encoder = _encoder_dir("roberta", tmp_path / "encoder")
    assert json.loads((encoder / "tokenizer_config.json").read_text())["add_prefix_space"] is False
    raw = AutoTokenizer.from_pretrained(str(encoder))
    words = ["Super", "Bowl", "Sunday"]
    glued = raw(words, is_split_into_words=True)["input_ids"]
    assert raw.convert_ids_to_tokens(glued)[1] != "ĠSuper"  # what transformers gives by itself
    spaced = [raw.bos_token_id, *raw.convert_tokens_to_ids(["ĠSuper", "ĠBowl", "ĠSunday"]), raw.eos_token_id]
    assert raw.unk_token_id not in spaced

    data = tmp_path / "train.conll"
    data.write_text("Super\tB-geo-loc\nBowl\tI-geo-loc\nSunday\tO\n\nBarack\tB-person\nObama\tI-person\n")
    assert main(["train", "--encoder", str(encoder), "--train", str(data), "--output", str(tmp_path / "model"),
                 "--epochs", "1", "--max-steps", "1", "--batch-size", "2", "--entity-max-length", "2",
                 "--model-max-length", "32", "--marker-max-length", "8", "--device", "cpu"]) == 0
    capsys.readouterr()
    tagger = NerTagger.load(tmp_path / "model", device="cpu", precision="fp32")
    [encoded] = tagger.tokenizer.encode([words])
    assert encoded.input_ids.tolist() == spaced
    # and span_marker, which loads the saved tokenizer with add_prefix_space=True, sees the same ids
    assert ReferenceSpanMarker(tmp_path / "model").tokens(words) == spaced
