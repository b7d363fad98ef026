"""SpanMarker model configuration, stored as span_marker 1.x writes it to config.json.

span_marker keeps the encoder's whole config nested under ``encoder`` (including a
``_name_or_path`` that may not exist on the loading machine), the entity types under a top-level
``id2label`` with "O" first, and ``id2reduced_id`` mapping the encoder's BIO label ids to those
types. We read and write the same keys so checkpoints move both ways.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Inference precisions tagger.inference runs; here, free of torch, so the CLI's --help stays fast.
PRECISIONS = ("fp32", "bf16", "fp16", "int8")

SPAN_MARKER_VERSION = "1.8.1"  # the format version we write; loading accepts any 1.x
OUTSIDE = "O"
# Encoder families whose attention depends on a token's physical index in the sequence, not only
# on the position_ids we pass: MPNet (relative_attention_bias over index differences), DeBERTa and
# DeBERTa-v2/v3 (relative positions built from the index), RoFormer (rotary angles from the
# index). Moving a marker changes its state there, so they need span_marker's own marker layout.
# BERT, RoBERTa, ALBERT, DistilBERT, ELECTRA, XLM-R... read position only from position_ids
# (transformers 5 dropped BERT's index-based "relative_key" embeddings).
PHYSICAL_POSITION_ENCODERS = frozenset({"mpnet", "deberta", "deberta-v2", "roformer"})


@dataclass
class SpanMarkerConfig:
    encoder: dict[str, Any]
    labels: list[str]  # entity types, "O" first
    model_max_length: int = 256
    marker_max_length: int = 128
    entity_max_length: int = 8
    # Fields span_marker writes that we keep round-tripping verbatim.
    extra: dict[str, Any] = field(default_factory=dict)
    # tweetner's own metadata (model name/version, training summary); ignored by span_marker.
    tweetner: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels or self.labels[0] != OUTSIDE:
            raise ValueError(f"labels must start with {OUTSIDE!r}, got {self.labels[:3]}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("duplicate labels")
        for name in ("model_max_length", "marker_max_length", "entity_max_length"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def outside_id(self) -> int:
        return 0

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.get("hidden_size") or self.encoder.get("d_model") or self.encoder.get("dim"))

    @property
    def dropout_rate(self) -> float:
        for key in ("hidden_dropout_prob", "dropout_rate", "dropout"):
            if self.encoder.get(key) is not None:
                return float(self.encoder[key])
        return 0.1

    @property
    def positions_are_physical(self) -> bool:
        """Whether the encoder sees where markers sit in the row, so only span_marker's layout is exact."""
        return self.encoder.get("model_type") in PHYSICAL_POSITION_ENCODERS

    @property
    def word_shape_dim(self) -> int:
        """Width of the word-shape embedding read beside the marker states; 0 (span_marker's
        models) means none. Stored in our own metadata, so span_marker 1.x configs load unchanged."""
        return int(self.tweetner.get("word_shape_dim") or 0)

    @property
    def strip_hashtags(self) -> bool:
        """Whether the encoder reads ``#Apple`` as ``Apple`` (the span keeps the ``#``)."""
        return bool(self.tweetner.get("strip_hashtags", False))

    @property
    def model_name(self) -> str:
        return str(self.tweetner.get("model_name") or self.encoder.get("_name_or_path") or "span-marker")

    @property
    def model_version(self) -> str:
        return str(self.tweetner.get("model_version") or "unversioned")

    def bio_labels(self) -> list[str]:
        """The encoder-level BIO labels span_marker stores (O, B-x, I-x, ... in type order)."""
        out = [OUTSIDE]
        for label in self.labels[1:]:
            out += [f"B-{label}", f"I-{label}"]
        return out

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        bio = self.bio_labels()
        encoder = dict(self.encoder)
        encoder["id2label"] = {str(i): label for i, label in enumerate(bio)}
        encoder["label2id"] = {label: i for i, label in enumerate(bio)}
        type_of = {label: (label[2:] if label != OUTSIDE else OUTSIDE) for label in bio}
        out: dict[str, Any] = {
            "architectures": ["SpanMarkerModel"],
            "model_type": "span-marker",
            "encoder": encoder,
            "id2label": {str(i): label for i, label in enumerate(self.labels)},
            "label2id": dict(self.label2id),
            "id2reduced_id": {str(i): self.label2id[type_of[label]] for i, label in enumerate(bio)},
            "model_max_length": self.model_max_length,
            "model_max_length_default": 512,
            "marker_max_length": self.marker_max_length,
            "entity_max_length": self.entity_max_length,
            "max_prev_context": None,
            "max_next_context": None,
            "trained_with_document_context": False,
            "span_marker_version": SPAN_MARKER_VERSION,
            "vocab_size": encoder.get("vocab_size"),
            "torch_dtype": self.extra.get("torch_dtype", "float32"),
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        if self.tweetner:
            out["tweetner"] = self.tweetner
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SpanMarkerConfig":
        if data.get("model_type") != "span-marker":
            raise ValueError(
                f"not a span-marker config (model_type={data.get('model_type')!r}); "
                "to start from a plain encoder use `tweetner train --encoder DIR`"
            )
        encoder = dict(data["encoder"])
        labels = _entity_types(data, encoder)
        known = {
            "architectures", "model_type", "encoder", "id2label", "label2id", "id2reduced_id",
            "model_max_length", "marker_max_length", "entity_max_length", "tweetner", "vocab_size",
            "dtype", "span_marker_version", "transformers_version",
        }
        extra = {k: v for k, v in data.items() if k not in known}
        extra["span_marker_version"] = data.get("span_marker_version", SPAN_MARKER_VERSION)
        return cls(
            encoder=encoder,
            labels=labels,
            model_max_length=int(data.get("model_max_length") or data.get("model_max_length_default") or 512),
            marker_max_length=int(data.get("marker_max_length", 128)),
            entity_max_length=int(data.get("entity_max_length", 8)),
            extra=extra,
            tweetner=dict(data.get("tweetner") or {}),
        )

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "SpanMarkerConfig":
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{directory} has no config.json: not a span-marker model directory")
        return cls.from_dict(json.loads(path.read_text()))


def _entity_types(data: dict[str, Any], encoder: dict[str, Any]) -> list[str]:
    """Entity types in id order, from the top-level id2label or, failing that, the BIO labels."""
    top = data.get("id2label")
    if top and "O" in top.values():
        types = [label for _, label in sorted(((int(k), v) for k, v in top.items()))]
        # A top-level id2label equal to the encoder's BIO labels means the types were never reduced.
        if all(t == OUTSIDE or (len(t) > 2 and t[1] == "-" and t[0] in "BIESLU") for t in types):
            return _reduce(types)
        return types
    enc = encoder.get("id2label") or {}
    if not enc:
        raise ValueError("config has no id2label: cannot tell the entity types")
    return _reduce([label for _, label in sorted(((int(k), v) for k, v in enc.items()))])


def _reduce(bio: list[str]) -> list[str]:
    return [OUTSIDE] + sorted({label[2:] for label in bio if label != OUTSIDE})
