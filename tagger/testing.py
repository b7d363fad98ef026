"""Small span-marker models for tests and demos: real architecture, random weights, built offline."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from tagger.configuration import SpanMarkerConfig
from tagger.encoders import packaged_minilm_dir
from tagger.modeling import VOCAB_MULTIPLE, SpanMarkerModel
from tagger.tokenizer import END_MARKER, START_MARKER, SpanMarkerTokenizer

DEFAULT_LABELS = ("person", "geo-loc", "company")


def make_tiny_model(
    directory: str | Path,
    labels: Sequence[str] = DEFAULT_LABELS,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    entity_max_length: int = 8,
    marker_max_length: int = 128,
    model_max_length: int = 256,
    model_version: str | None = None,
) -> Path:
    """Write a tiny randomly initialised BERT span-marker model (MiniLM's vocabulary) to ``directory``."""
    model, tokenizer = build_tiny_model(
        labels, seed=seed, hidden_size=hidden_size, layers=layers, entity_max_length=entity_max_length,
        marker_max_length=marker_max_length, model_max_length=model_max_length,
    )
    model.config.tweetner.update({"model_name": "tiny-random", "model_version": model_version or f"tiny-{seed}"})
    return model.save_pretrained(directory, tokenizer)


def build_tiny_model(
    labels: Sequence[str] = DEFAULT_LABELS,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    entity_max_length: int = 8,
    marker_max_length: int = 128,
    model_max_length: int = 256,
) -> tuple[SpanMarkerModel, SpanMarkerTokenizer]:
    torch.manual_seed(seed)
    hf_tokenizer = AutoTokenizer.from_pretrained(str(packaged_minilm_dir()), use_fast=True, local_files_only=True)
    hf_tokenizer.add_tokens([START_MARKER, END_MARKER], special_tokens=True)
    vocab = -(-len(hf_tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    bert_config = BertConfig(
        vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden_size * 2, max_position_embeddings=512,
    )
    encoder = BertModel(bert_config, add_pooling_layer=False)
    encoder_config = bert_config.to_dict()
    encoder_config["_name_or_path"] = "tiny-random-bert"
    config = SpanMarkerConfig(
        encoder=encoder_config, labels=["O", *labels], model_max_length=model_max_length,
        marker_max_length=marker_max_length, entity_max_length=entity_max_length,
    )
    model = SpanMarkerModel.from_config(config)
    model.encoder.load_state_dict(encoder.state_dict())
    # Larger classifier weights than the usual init, so random models do predict some entities.
    torch.nn.init.normal_(model.classifier.weight, std=0.5)
    model.eval()
    return model, SpanMarkerTokenizer(hf_tokenizer, config)
