"""Hugging Face token classification: any local ``AutoModelForTokenClassification`` directory
(``save_pretrained`` output of transformers' Trainer) with BIO / IOB2 / BIOES labels.

Words come from tagger.words (raw tweets) or the caller (CoNLL); each word's tag is its first
subword's decision, entities are decoded from the tags, and a word tagger maps them back onto the
raw tweet. Entity types the model names differently from us are renamed with a label map in the
format of the training options (tagger.corpora: ``{"labels": {"PER": ["person"], "MISC": ["O"]}}``,
one type per label, "O" to drop it), read from ``tweetner_label_map.json`` in the model directory
or given as ``label_map``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from tagger.corpora import OUTSIDE, CorpusError, LabelMap
from tagger.backends.tags import TagSet
from tagger.backends.word_tagger import SpanTuple, WordTagger
from tagger.configuration import PRECISIONS
from tagger.inference import _prepare, default_device, default_precision

LABEL_MAP_NAME = "tweetner_label_map.json"


class TokenClassificationTagger(WordTagger):
    PRECISIONS = PRECISIONS

    def __init__(self, model, tokenizer, *, device: str | None = None, precision: str | None = None,
                 label_map: Mapping[str, str | None] | None = None, model_name: str | None = None,
                 model_version: str | None = None, max_batch_rows: int = 64, max_length: int | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or default_device())
        self.precision = precision or default_precision(self.device.type)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.model = _prepare(model, self.device, self.precision)
        self.tokenizer = tokenizer
        id2label = model.config.id2label
        self.tagset = TagSet.from_tags([id2label[i] for i in range(len(id2label))])
        self.rename = dict(label_map) if label_map else None
        meta = getattr(model.config, "tweetner", None) or {}
        self.model_name = (model_name or meta.get("model_name") or Path(model.config.name_or_path or "").name
                           or "token-classification")
        self.model_version = model_version or meta.get("model_version") or "unversioned"
        self.max_batch_rows = max_batch_rows
        limit = tokenizer.model_max_length if 0 < tokenizer.model_max_length < 100_000 else 512
        positions = getattr(model.config, "max_position_embeddings", None) or limit
        self.max_length = max_length or min(limit, positions)

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str | None = None, precision: str | None = None,
             label_map: str | Path | Mapping[str, str | None] | None = None, **kwargs) -> "TokenClassificationTagger":
        from transformers import AutoModelForTokenClassification

        model_dir = Path(model_dir)
        model = AutoModelForTokenClassification.from_pretrained(str(model_dir), local_files_only=True)
        if label_map is None and (model_dir / LABEL_MAP_NAME).is_file():
            label_map = model_dir / LABEL_MAP_NAME
        if isinstance(label_map, (str, Path)):
            label_map = output_renames(LabelMap.load(label_map))
        kwargs.setdefault("model_version", _version_of(model_dir))
        return cls(model, load_word_tokenizer(model_dir), device=device, precision=precision,
                   label_map=label_map, **kwargs)

    @property
    def labels(self) -> list[str]:
        if not self.rename:
            return self.tagset.labels
        return sorted({self.rename.get(t, t) for t in self.tagset.labels} - {None})

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[SpanTuple]]:
        out: list[list[SpanTuple]] = [[] for _ in sentences]
        order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: len(sentences[i]))
        with torch.inference_mode():
            for lo in range(0, len(order), self.max_batch_rows):
                started = time.perf_counter()
                rows = order[lo : lo + self.max_batch_rows]
                enc = self.tokenizer([list(sentences[i]) for i in rows], is_split_into_words=True, truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt")
                inputs = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask",
                                                                                 "token_type_ids")}
                probs = self.model(**inputs).logits.float().softmax(-1).cpu()
                best_p, best_id = probs.max(-1)
                for b, i in enumerate(rows):
                    n = len(sentences[i])
                    # A word past the model's window stays outside any entity.
                    tag_ids, scores = [self.tagset.outside] * n, [1.0] * n
                    seen: set[int] = set()
                    for pos, word in enumerate(enc.word_ids(b)):
                        if word is None or word in seen:
                            continue  # special tokens and later subwords of a word
                        seen.add(word)
                        tag_ids[word], scores[word] = int(best_id[b, pos]), float(best_p[b, pos])
                    self.stats.truncated_words += n - len(seen)
                    out[i] = self.tagset.spans(tag_ids, scores, self.rename)
                self.stats.batch_seconds.append(time.perf_counter() - started)
                self.stats.batches += 1
                self.stats.positions += int(enc["input_ids"].numel())
                self.stats.text_tokens += int(enc["attention_mask"].sum())
        self.stats.sentences += len(sentences)
        return out


def output_renames(label_map: LabelMap) -> dict[str, str | None]:
    """The model's types onto ours: a tagger must name one type per entity, so each label maps to
    exactly one (None for "O": not an entity for us)."""
    out: dict[str, str | None] = {}
    for label, targets in label_map.labels.items():
        if len(targets) != 1:
            raise CorpusError(f"label map {label_map.name}: {label!r} maps to {list(targets)}; a model's "
                              "output label needs exactly one of our types (or \"O\")")
        out[label] = None if targets[0] == OUTSIDE else targets[0]
    return out


def _version_of(model_dir: Path) -> str:
    """A checkpoint from elsewhere carries no version: its config and weight sizes name it (cheap,
    and changes whenever the checkpoint is re-saved or retrained)."""
    meta = json.loads((model_dir / "config.json").read_text()).get("tweetner") or {}
    if meta.get("model_version"):
        return str(meta["model_version"])
    digest = hashlib.sha256((model_dir / "config.json").read_bytes())
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return f"tc-{digest.hexdigest()[:12]}"


def load_word_tokenizer(model_dir: str | Path):
    """The directory's fast tokenizer, set up for pre-split words: byte-level BPE tokenizers
    (RoBERTa, BERTweet-style) need a prefix space to encode a word as they do inside a text."""
    from transformers import AutoTokenizer

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True, local_files_only=True)
    if not tokenizer.is_fast:
        raise ValueError(f"{model_dir}: token classification needs a fast tokenizer (tokenizer.json)")
    pre = json.dumps(json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer"))
    if "ByteLevel" in pre and not getattr(tokenizer, "add_prefix_space", False):
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True, local_files_only=True,
                                                  add_prefix_space=True)
    return tokenizer
