"""A checkpoint in span_marker 1.8's on-disk format loads and reproduces the reference computation.

The checkpoint is built here with known (seeded) weights exactly as span_marker writes it:
``pytorch_model.bin`` with ``encoder.*`` (pooler included) and ``classifier.*``, the encoder config
nested under ``encoder`` with a ``_name_or_path`` that does not exist, BIO labels in the encoder
and entity types with ``id2reduced_id`` at the top, the vocabulary resized to a multiple of 8.
The reference side is a plain re-statement of span_marker's published algorithm: fixed padding to
model_max_length + 2 x marker_max_length, a per-sample 2-D mask, an eager BERT with an additive
mask, and greedy decoding with Python's sort.
"""
from __future__ import annotations

import json

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from tagger.encoders import packaged_minilm_dir
from tagger.inference import NerTagger

TYPES = ["O", "company", "geo-loc", "person"]  # span_marker: "O" then the sorted types
BIO = ["O", "B-person", "I-person", "B-geo-loc", "I-geo-loc", "B-company", "I-company"]
MODEL_MAX, MARKER_MAX, ENTITY_MAX = 48, 12, 4


def _write_span_marker_checkpoint(directory):
    torch.manual_seed(1234)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_dir()), local_files_only=True)
    tokenizer.add_tokens(["<start>", "<end>"], special_tokens=True)
    vocab = (len(tokenizer) + 7) // 8 * 8
    bert_config = BertConfig(vocab_size=vocab, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=96, max_position_embeddings=512)
    encoder = BertModel(bert_config)  # with the pooler, as span_marker's AutoModel has it
    for p in encoder.parameters():  # larger weights than the default init, for non-trivial outputs
        p.data.normal_(0, 0.2)
    classifier = torch.nn.Linear(2 * 48, len(TYPES))
    torch.nn.init.normal_(classifier.weight, std=1.0)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in classifier.state_dict().items()})
    torch.save(state, directory / "pytorch_model.bin")
    encoder_dict = bert_config.to_dict()
    encoder_dict.update({
        "_name_or_path": "/nonexistent/machine/bert-tiny",
        "id2label": {str(i): label for i, label in enumerate(BIO)},
        "label2id": {label: i for i, label in enumerate(BIO)},
        "architectures": ["BertModel"],
    })
    reduced = {label: (TYPES.index(label[2:]) if label != "O" else 0) for label in BIO}
    config = {
        "architectures": ["SpanMarkerModel"],
        "encoder": encoder_dict,
        "entity_max_length": ENTITY_MAX,
        "id2label": {str(i): t for i, t in enumerate(TYPES)},
        "label2id": {t: i for i, t in enumerate(TYPES)},
        "id2reduced_id": {str(i): reduced[label] for i, label in enumerate(BIO)},
        "marker_max_length": MARKER_MAX,
        "max_next_context": None,
        "max_prev_context": None,
        "model_max_length": MODEL_MAX,
        "model_max_length_default": 512,
        "model_type": "span-marker",
        "span_marker_version": "1.8.1",
        "torch_dtype": "float32",
        "trained_with_document_context": False,
        "transformers_version": "4.44.2",
        "vocab_size": vocab,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(str(directory))
    return encoder, classifier, tokenizer


def _reference_predict(encoder, classifier, tokenizer, sentences):
    """span_marker's computation, written out plainly for one sentence at a time."""
    encoder = encoder.eval()
    start_id, end_id = tokenizer.convert_tokens_to_ids(["<start>", "<end>"])
    total = MODEL_MAX + 2 * MARKER_MAX
    out = []
    for words in sentences:
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MODEL_MAX,
                        padding="max_length")
        word_ids = enc.word_ids()
        num_tokens = sum(1 for t in enc["input_ids"] if t != tokenizer.pad_token_id)
        num_words = max(w for w in word_ids if w is not None) + 1
        spans = [(s, e) for s in range(num_words) for e in range(s + 1, min(num_words, s + ENTITY_MAX) + 1)]
        scores, labels = [], []
        for lo in range(0, len(spans), MARKER_MAX):
            group = spans[lo : lo + MARKER_MAX]
            n = len(group)
            ids = list(enc["input_ids"][:num_tokens]) + [tokenizer.pad_token_id] * (MODEL_MAX - num_tokens)
            ids += [start_id] * n + [tokenizer.pad_token_id] * (MARKER_MAX - n)
            ids += [end_id] * n + [tokenizer.pad_token_id] * (MARKER_MAX - n)
            pos = [i + 2 for i in range(num_tokens)] + [0] * (MODEL_MAX - num_tokens)
            starts = [enc.word_to_tokens(s).start + 2 for s, _ in group]
            ends = [enc.word_to_tokens(e - 1).end - 1 + 2 for _, e in group]
            pos += starts + [0] * (MARKER_MAX - n) + ends + [0] * (MARKER_MAX - n)
            mask = torch.zeros(total, total)
            mask[:num_tokens, :num_tokens] = 1
            for k in range(n):
                a, b = MODEL_MAX + k, MODEL_MAX + MARKER_MAX + k
                mask[a, :num_tokens] = mask[b, :num_tokens] = 1
                mask[a, a] = mask[a, b] = mask[b, a] = mask[b, b] = 1
            additive = (1.0 - mask)[None, None] * torch.finfo(torch.float32).min
            with torch.no_grad():
                hidden = encoder(input_ids=torch.tensor([ids]), attention_mask=additive,
                                 position_ids=torch.tensor([pos]),
                                 token_type_ids=torch.zeros(1, total, dtype=torch.long))[0][0]
                feats = torch.cat([hidden[MODEL_MAX : MODEL_MAX + n],
                                   hidden[MODEL_MAX + MARKER_MAX : MODEL_MAX + MARKER_MAX + n]], dim=-1)
                probs = classifier(feats).softmax(-1)
            best, best_ids = probs.max(-1)
            scores += best.tolist()
            labels += best_ids.tolist()
        taken = [False] * num_words
        entities = []
        for (s, e), score, label in sorted(zip(spans, scores, labels), key=lambda t: t[1], reverse=True):
            if label != 0 and not any(taken[s:e]):
                taken[s:e] = [True] * (e - s)
                entities.append((s, e, TYPES[label], score))
        out.append(sorted(entities))
    return out


def test_span_marker_checkpoint_reproduces_reference(tmp_path):
    encoder, classifier, tokenizer = _write_span_marker_checkpoint(tmp_path)
    # The reference runs BERT's eager attention so that it shares no attention code with us.
    eager_config = BertConfig.from_dict(encoder.config.to_dict())
    eager_config._attn_implementation = "eager"
    reference_encoder = BertModel(eager_config)
    assert reference_encoder.config._attn_implementation == "eager"
    reference_encoder.load_state_dict(encoder.state_dict())
    sentences = [
        "@SammieLynnsMom they will be at the Empire State Building in New York tomorrow".split(),
        "Barack Obama and Michelle".split(),
        ["ok"],
        # longer than MODEL_MAX tokens: truncated, and more spans than MARKER_MAX (several passes)
        ("word " * 60).split(),
    ]
    expected = _reference_predict(reference_encoder, classifier, tokenizer, sentences)
    tagger = NerTagger.load(tmp_path, device="cpu", precision="fp32")
    assert tagger.labels == TYPES
    got = tagger.predict_words(sentences)
    assert sum(len(e) for e in expected) > 3  # the weights are strong enough to produce entities
    for exp, found in zip(expected, got):
        assert [(s, e, label) for s, e, label, _ in exp] == [(f.word_start, f.word_end, f.label) for f in found]
        for (_, _, _, score), f in zip(exp, found):
            assert abs(score - f.score) < 1e-4
    # fixed padding with our collator gives the same entities too
    fixed = NerTagger.load(tmp_path, device="cpu", precision="fp32", fixed_padding=True)
    assert [[(f.word_start, f.word_end, f.label) for f in s] for s in fixed.predict_words(sentences)] == \
           [[(s, e, label) for s, e, label, _ in exp] for exp in expected]


def test_checkpoint_version_is_the_weights_digest(tmp_path):
    _write_span_marker_checkpoint(tmp_path)
    a = NerTagger.load(tmp_path, device="cpu", precision="fp32")
    b = NerTagger.load(tmp_path, device="cpu", precision="fp32")
    assert a.model_version == b.model_version and len(a.model_version) == 12
