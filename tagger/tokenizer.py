"""Word-level encoding for the span classifier: subword tokens, candidate spans and marker passes.

The model reads words (a tweet split by ``tagger.words`` or a pre-tokenized CoNLL sentence).
Each word is tokenized on its own, every span of up to ``entity_max_length`` words becomes a
candidate, and its start/end markers take the position of the span's first and last subword.
Candidates are cut into passes of at most ``marker_max_length`` marker pairs, exactly as
span_marker does, so that its checkpoints see the inputs they were trained on.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from tagger.configuration import SpanMarkerConfig
from tagger.shapes import encoder_text, word_shapes

logger = logging.getLogger(__name__)

START_MARKER = "<start>"
END_MARKER = "<end>"
# span_marker offsets every position id by 2 (a RoBERTa convention it applies to all encoders);
# checkpoints are trained with it, so we keep it.
POSITION_OFFSET = 2


@dataclass
class EncodedWords:
    """One sentence after subword tokenization and truncation to the model window."""

    input_ids: np.ndarray  # int64 [num_tokens], special tokens included
    word_first_token: np.ndarray  # int64 [num_words]: index of each word's first subword
    word_last_token: np.ndarray  # int64 [num_words]: index of each word's last subword
    num_words: int  # words that fit in the window (these get tagged)
    total_words: int  # words in the input
    word_shapes: np.ndarray | None = None  # int64 [num_words] (models with word shapes)

    @property
    def truncated_words(self) -> int:
        return self.total_words - self.num_words


class RowSize:
    """What the batcher needs of an encoder row (a pass, or several packed into one): fields
    ``input_ids`` (the text) and ``start_positions`` (one per span)."""

    input_ids: np.ndarray
    start_positions: np.ndarray

    @property
    def num_spans(self) -> int:
        return len(self.start_positions)

    @property
    def length(self) -> int:
        """Positions this row needs with dynamic padding: text + 2 markers per span."""
        return len(self.input_ids) + 2 * self.num_spans


@dataclass
class MarkerPass(RowSize):
    """One encoder row: a sentence's text plus up to ``marker_max_length`` marker pairs."""

    sentence: int  # index of the sentence in the caller's batch
    input_ids: np.ndarray  # text tokens only; markers are added by the collator
    start_positions: np.ndarray  # token index of each span's first subword
    end_positions: np.ndarray  # token index of each span's last subword
    first_span: int  # index of this pass's first span in the sentence's span list
    labels: np.ndarray | None = None  # entity type id per span (training)
    span_shapes: np.ndarray | None = None  # int64 [num_spans, 2]: first and last word's shape


def force_prefix_space(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Make a byte-level BPE tokenizer start every pre-split word with a space; True if it changed.

    Byte-level BPE (RoBERTa, GPT-2, BART, Longformer...) encodes a word's leading space in its first
    piece ("Ġ"); without ``add_prefix_space`` the words of a pre-split sentence are tokenized as if
    glued to the previous one ("Super Bowl" -> "Su per Bo wl"). span_marker always loads its
    tokenizer with ``add_prefix_space=True``; doing it here, where every tokenizer passes (training
    and inference), gives the same tokens. Other families (WordPiece, SentencePiece) are untouched.
    """
    backend = tokenizer.backend_tokenizer
    if backend.pre_tokenizer is None:
        return False
    state = json.loads(backend.pre_tokenizer.__getstate__())
    if not _set_byte_level_prefix_space(state):
        return False
    pre_tokenizer = backend.pre_tokenizer
    pre_tokenizer.__setstate__(json.dumps(state).encode())
    backend.pre_tokenizer = pre_tokenizer
    tokenizer.add_prefix_space = True
    tokenizer.init_kwargs["add_prefix_space"] = True  # so that save_pretrained records it
    return True


def _set_byte_level_prefix_space(pre_tokenizer: dict | None) -> bool:
    """Set add_prefix_space on every ByteLevel step (possibly inside a Sequence); True if one was off."""
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "Sequence":
        changed = [_set_byte_level_prefix_space(step) for step in pre_tokenizer.get("pretokenizers", [])]
        return any(changed)
    if pre_tokenizer.get("type") == "ByteLevel" and not pre_tokenizer.get("add_prefix_space"):
        pre_tokenizer["add_prefix_space"] = True
        return True
    return False


@lru_cache(maxsize=64)
def candidate_spans(num_words: int, entity_max_length: int) -> np.ndarray:
    """All (start, end) word spans, end exclusive, in span_marker's order: by start, then end."""
    if num_words <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    starts, ends = [], []
    for start in range(num_words):
        stop = min(num_words, start + entity_max_length)
        for end in range(start + 1, stop + 1):
            starts.append(start)
            ends.append(end)
    spans = np.stack([np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)], axis=1)
    spans.setflags(write=False)
    return spans


class SpanMarkerTokenizer:
    """Wraps a Hugging Face fast tokenizer that has the two marker tokens added."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: SpanMarkerConfig) -> None:
        if not tokenizer.is_fast:
            raise ValueError("a fast (Rust) tokenizer is required: word alignment needs word_ids()")
        missing = [t for t in (START_MARKER, END_MARKER) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)
        force_prefix_space(tokenizer)
        self.tokenizer = tokenizer
        self.config = config
        self.start_marker_id = int(tokenizer.convert_tokens_to_ids(START_MARKER))
        self.end_marker_id = int(tokenizer.convert_tokens_to_ids(END_MARKER))
        self.pad_token_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        limits = [config.model_max_length]
        if tokenizer.model_max_length and tokenizer.model_max_length < 1e9:
            limits.append(int(tokenizer.model_max_length))
        max_positions = config.encoder.get("max_position_embeddings")
        if max_positions:
            limits.append(int(max_positions) - POSITION_OFFSET)
        self.model_max_length = min(limits)

    def __len__(self) -> int:
        return len(self.tokenizer)

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: SpanMarkerConfig) -> "SpanMarkerTokenizer":
        # The directory's config.json describes the span-marker model, not the tokenizer's encoder;
        # transformers warns about the unknown model type, which is expected here.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), use_fast=True, local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        return cls(tokenizer, config)

    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(str(directory))

    def encode(self, sentences: Sequence[Sequence[str]]) -> list[EncodedWords]:
        """Tokenize pre-split sentences; words past the model window are counted, not tagged."""
        if not sentences:
            return []
        nonempty = [i for i, words in enumerate(sentences) if len(words)]
        out: list[EncodedWords] = [self._empty() for _ in sentences]
        if not nonempty:
            return out
        texts = [list(sentences[i]) for i in nonempty]
        if self.config.strip_hashtags:
            texts = [[encoder_text(w) for w in words] for words in texts]
        batch = self.tokenizer(
            texts,
            is_split_into_words=True,
            truncation=True,
            max_length=self.model_max_length,
            add_special_tokens=True,
        )
        for row, i in enumerate(nonempty):
            words = sentences[i]
            word_ids = batch.word_ids(row)
            n_total = len(words)
            first = np.zeros(n_total, dtype=np.int64)
            last = np.zeros(n_total, dtype=np.int64)
            seen = np.zeros(n_total, dtype=bool)
            num_words = 0
            for tok, wid in enumerate(word_ids):
                if wid is None:
                    continue
                if not seen[wid]:
                    seen[wid] = True
                    first[wid] = tok
                last[wid] = tok
                num_words = max(num_words, wid + 1)
            out[i] = EncodedWords(
                input_ids=np.asarray(batch["input_ids"][row], dtype=np.int64),
                word_first_token=first[:num_words],
                word_last_token=last[:num_words],
                num_words=num_words,
                total_words=n_total,
                word_shapes=word_shapes(words[:num_words]) if self.config.word_shape_dim else None,
            )
        return out

    def _empty(self) -> EncodedWords:
        return EncodedWords(
            input_ids=np.zeros(0, dtype=np.int64),
            word_first_token=np.zeros(0, dtype=np.int64),
            word_last_token=np.zeros(0, dtype=np.int64),
            num_words=0,
            total_words=0,
        )

    def passes(
        self,
        sentence: int,
        encoded: EncodedWords,
        span_labels: np.ndarray | None = None,
        markers_per_pass: int | None = None,
    ) -> list[MarkerPass]:
        """Cut one sentence's candidate spans into encoder rows."""
        spans = candidate_spans(encoded.num_words, self.config.entity_max_length)
        if len(spans) == 0:
            return []
        per_pass = markers_per_pass or self.config.marker_max_length
        starts = encoded.word_first_token[spans[:, 0]]
        ends = encoded.word_last_token[spans[:, 1] - 1]
        shapes = self.span_shapes(encoded, spans)
        rows = []
        for lo in range(0, len(spans), per_pass):
            hi = min(lo + per_pass, len(spans))
            rows.append(
                MarkerPass(
                    sentence=sentence,
                    input_ids=encoded.input_ids,
                    start_positions=starts[lo:hi],
                    end_positions=ends[lo:hi],
                    first_span=lo,
                    labels=None if span_labels is None else span_labels[lo:hi],
                    span_shapes=None if shapes is None else shapes[lo:hi],
                )
            )
        return rows

    @staticmethod
    def span_shapes(encoded: EncodedWords, spans: np.ndarray) -> np.ndarray | None:
        """Shape ids of each span's first and last word, or None for a model without shapes."""
        if encoded.word_shapes is None:
            return None
        return np.stack((encoded.word_shapes[spans[:, 0]], encoded.word_shapes[spans[:, 1] - 1]), axis=1)

    def span_labels(self, encoded: EncodedWords, entities: Sequence[tuple[int, int, int]]) -> np.ndarray:
        """Label id for every candidate span: the entity's type where it matches exactly, else O."""
        spans = candidate_spans(encoded.num_words, self.config.entity_max_length)
        labels = np.zeros(len(spans), dtype=np.int64)
        if len(spans) and entities:
            index = {(int(s), int(e)): i for i, (s, e) in enumerate(spans)}
            for start, end, label_id in entities:
                i = index.get((start, end))
                if i is not None:
                    labels[i] = label_id
        return labels
