"""The span classifier: an encoder reading text + marker pairs, and a linear layer over the
concatenated start/end marker states.

Checkpoints are span_marker 1.x directories: ``config.json`` (see configuration.py), weights
named ``encoder.*`` / ``classifier.*`` in ``model.safetensors`` or ``pytorch_model.bin``, and the
tokenizer files with ``<start>``/``<end>`` added. The encoder is rebuilt from the nested config,
never from its ``_name_or_path``, so a checkpoint loads on a machine without the original encoder.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel

from tagger.collator import FlatSpanBatch, SpanBatch
from tagger.flat_encoder import marker_states, supports_flat
from tagger.configuration import SpanMarkerConfig
from tagger.shapes import NUM_SHAPES
from tagger.tokenizer import END_MARKER, START_MARKER, SpanMarkerTokenizer

logger = logging.getLogger(__name__)

SAFETENSORS_NAME = "model.safetensors"
PYTORCH_NAME = "pytorch_model.bin"
# Embedding rows are padded to a multiple of 8 after adding the markers, as span_marker does.
VOCAB_MULTIPLE = 8
# DebertaEmbeddings/DebertaV2Embeddings multiply their output by the attention mask, which only
# works for a [B, L] padding mask.
MASK_INCOMPATIBLE_ENCODERS = frozenset({"deberta", "deberta-v2"})


class SpanMarkerModel(nn.Module):
    def __init__(self, config: SpanMarkerConfig, encoder: PreTrainedModel) -> None:
        super().__init__()
        if config.encoder.get("model_type") in MASK_INCOMPATIBLE_ENCODERS:
            raise ValueError(
                f"{config.encoder['model_type']} encoders cannot read a per-row attention mask: transformers "
                "multiplies their embeddings by the mask, which fails for SpanMarker's [L, L] pattern "
                "(span_marker itself fails the same way)"
            )
        self.config = config
        self.encoder = encoder
        self.dropout = nn.Dropout(config.dropout_rate)
        shape_dim = config.word_shape_dim
        # Only models that have shapes own the embedding, so span_marker checkpoints keep their exact
        # parameter names.
        self.shape_embedding = nn.Embedding(NUM_SHAPES, shape_dim, padding_idx=0) if shape_dim else None
        self.classifier = nn.Linear(config.hidden_size * 2 + shape_dim * 2, config.num_labels)
        # Encoders without token types (DistilBERT...) reject the argument.
        self._uses_token_types = bool(config.encoder.get("type_vocab_size"))
        self._eager_attention = getattr(encoder.config, "_attn_implementation", "sdpa") == "eager"

    # --- forward -------------------------------------------------------------------------------
    @property
    def runs_flat(self) -> bool:
        """Whether :class:`FlatSpanBatch` inputs work: a BERT-family encoder (tagger.flat_encoder)."""
        return supports_flat(self.encoder)

    def forward(self, batch: SpanBatch | FlatSpanBatch) -> torch.Tensor:
        """Logits ``[B, N, num_labels]`` for the batch's marker pairs (``[M, num_labels]``, the
        spans pass by pass, for a flat batch)."""
        if isinstance(batch, FlatSpanBatch):
            states = marker_states(self.encoder, batch)
            spans = len(batch.start_index)
            return self._classify(torch.cat((states[:spans], states[spans:]), dim=-1), batch.span_shapes)
        mask = batch.attention_mask
        dtype = next(self.encoder.parameters()).dtype
        if self._eager_attention or not dtype.is_floating_point:
            # Additive mask for eager attention (and for quantized copies, which run eager math).
            float_dtype = dtype if dtype.is_floating_point else torch.float32
            mask = torch.zeros(mask.shape, dtype=float_dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(float_dtype).min
            )
        kwargs = {}
        if self._uses_token_types:
            kwargs["token_type_ids"] = torch.zeros_like(batch.input_ids)
        hidden = self.encoder(
            input_ids=batch.input_ids,
            attention_mask=mask,
            position_ids=batch.position_ids,
            **kwargs,
        )[0]
        T, S, N = batch.text_length, batch.marker_length, batch.span_slots
        features = torch.cat((hidden[:, T : T + N], hidden[:, T + S : T + S + N]), dim=-1)
        return self._classify(features, batch.span_shapes)

    def _classify(self, features: torch.Tensor, span_shapes: torch.Tensor | None) -> torch.Tensor:
        if self.shape_embedding is not None:
            if span_shapes is None:
                raise ValueError("this model reads word shapes: encode with its own tokenizer")
            shapes = self.shape_embedding(span_shapes).flatten(-2).to(features.dtype)  # [..., 2E]
            features = torch.cat((features, shapes), dim=-1)
        return self.classifier(self.dropout(features))

    def add_word_shapes(self, dim: int) -> None:
        """Give a model without shapes a shape embedding of width ``dim``, computing the same
        function as before: the classifier's new input columns start at zero."""
        if self.shape_embedding is not None:
            raise ValueError("the model already reads word shapes")
        old = self.classifier
        device = old.weight.device
        self.shape_embedding = nn.Embedding(NUM_SHAPES, dim, padding_idx=0).to(device)
        nn.init.normal_(self.shape_embedding.weight, std=1.0)
        with torch.no_grad():
            self.shape_embedding.weight[0].zero_()
        self.classifier = nn.Linear(old.in_features + 2 * dim, old.out_features).to(device)
        with torch.no_grad():
            self.classifier.weight.zero_()
            self.classifier.weight[:, : old.in_features].copy_(old.weight)
            self.classifier.bias.copy_(old.bias)
        self.config.tweetner["word_shape_dim"] = dim

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_encoder(
        cls,
        encoder_dir: str | Path,
        labels: list[str],
        *,
        model_max_length: int = 256,
        marker_max_length: int = 128,
        entity_max_length: int = 8,
        dropout: float | None = None,
        word_shape_dim: int = 0,
        strip_hashtags: bool = False,
    ) -> tuple["SpanMarkerModel", SpanMarkerTokenizer]:
        """A fresh model (random classifier) on top of a local Hugging Face encoder directory."""
        encoder_dir = Path(encoder_dir)
        if not (encoder_dir / "config.json").is_file():
            raise FileNotFoundError(f"{encoder_dir} is not a Hugging Face model directory (no config.json)")
        encoder = _load_pretrained_encoder(encoder_dir, dropout)
        hf_tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True, local_files_only=True)
        hf_tokenizer.add_tokens([START_MARKER, END_MARKER], special_tokens=True)
        encoder.resize_token_embeddings(len(hf_tokenizer), pad_to_multiple_of=VOCAB_MULTIPLE)
        encoder_config = encoder.config.to_dict()
        encoder_config["_name_or_path"] = str(encoder_dir)
        encoder_config["vocab_size"] = encoder.get_input_embeddings().weight.shape[0]
        encoder_config.pop("_attn_implementation_autoset", None)
        config = SpanMarkerConfig(
            encoder=encoder_config,
            labels=list(labels),
            model_max_length=model_max_length,
            marker_max_length=marker_max_length,
            entity_max_length=entity_max_length,
            tweetner={"word_shape_dim": word_shape_dim} if word_shape_dim else {},
        )
        if strip_hashtags:
            config.tweetner["strip_hashtags"] = True
        model = cls(config, encoder)
        nn.init.normal_(model.classifier.weight, std=float(encoder_config.get("initializer_range", 0.02)))
        nn.init.zeros_(model.classifier.bias)
        return model, SpanMarkerTokenizer(hf_tokenizer, config)

    @classmethod
    def from_config(cls, config: SpanMarkerConfig, attn_implementation: str = "sdpa") -> "SpanMarkerModel":
        """A randomly initialised model with the architecture the config describes."""
        return cls(config, _encoder_from_config(config.encoder, attn_implementation))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, attn_implementation: str = "sdpa"
    ) -> tuple["SpanMarkerModel", SpanMarkerTokenizer]:
        directory = Path(directory)
        config = SpanMarkerConfig.load(directory)
        model = cls.from_config(config, attn_implementation)
        weights_file, state = _read_weights(directory)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # The reference keeps BERT's unused pooler; we build the encoder without one.
        unexpected = [k for k in unexpected if not k.startswith("encoder.pooler.")]
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(
                f"{weights_file} does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if "model_version" not in config.tweetner:
            # A checkpoint without our metadata still gets a stable version: its weights' digest.
            config.tweetner["model_version"] = _file_digest(weights_file)
        model.eval()
        tokenizer = SpanMarkerTokenizer.from_pretrained(directory, config)
        return model, tokenizer

    def save_pretrained(
        self,
        directory: str | Path,
        tokenizer: SpanMarkerTokenizer,
        *,
        dtype: torch.dtype = torch.float32,
        pytorch_bin: bool = False,
    ) -> Path:
        """Write a span_marker-format directory; fp16 halves the size for shipping."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.state_dict().items()}
        if pytorch_bin:
            torch.save(state, directory / PYTORCH_NAME)
            (directory / SAFETENSORS_NAME).unlink(missing_ok=True)
        else:
            save_file(state, str(directory / SAFETENSORS_NAME), metadata={"format": "pt"})
            (directory / PYTORCH_NAME).unlink(missing_ok=True)
        config_dict_dtype = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype]
        self.config.extra["torch_dtype"] = config_dict_dtype
        self.config.save(directory)
        tokenizer.save_pretrained(directory)
        return directory


def _load_pretrained_encoder(encoder_dir: Path, dropout: float | None) -> PreTrainedModel:
    kwargs = {}
    if dropout is not None:
        kwargs["hidden_dropout_prob"] = dropout
    config = AutoConfig.from_pretrained(str(encoder_dir), local_files_only=True, **kwargs)

    def load(**options) -> PreTrainedModel:
        return AutoModel.from_pretrained(str(encoder_dir), config=config, local_files_only=True, **options)

    return _build_encoder(load, "sdpa")


def _encoder_from_config(encoder_config: dict, attn_implementation: str) -> PreTrainedModel:
    values = {k: v for k, v in encoder_config.items() if k not in ("model_type", "_name_or_path", "transformers_version")}
    config = AutoConfig.for_model(encoder_config["model_type"], **values)
    return _build_encoder(lambda **options: AutoModel.from_config(config, **options), attn_implementation)


def _build_encoder(make: Callable[..., PreTrainedModel], attn_implementation: str) -> PreTrainedModel:
    """The encoder, without its unused pooler where the family has that option.

    Families without SDPA support (MPNet, DeBERTa) fall back to eager attention with an additive mask.
    """
    error: Exception = RuntimeError("no attention implementation to try")
    for attn in dict.fromkeys((attn_implementation, "eager")):
        for options in ({"add_pooling_layer": False}, {}):
            try:
                return make(attn_implementation=attn, **options)
            except TypeError as exc:  # no pooler option in this family
                error = exc
            except ValueError as exc:  # no such attention implementation in this family
                error = exc
                break
    raise error  # the last failure: no combination could be built


def _read_weights(directory: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    safetensors_file = directory / SAFETENSORS_NAME
    if safetensors_file.is_file():
        return safetensors_file, load_file(str(safetensors_file))
    bin_file = directory / PYTORCH_NAME
    if bin_file.is_file():
        return bin_file, torch.load(bin_file, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{directory} has neither {SAFETENSORS_NAME} nor {PYTORCH_NAME}")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]
