"""Batched prediction: raw tweets or pre-split words in, entities with offsets and scores out.

Inputs are encoded once, cut into marker passes, sorted by length and packed into batches under a
position budget, so each batch is padded only to what its longest member needs. The collator's
marker layout follows the encoder (span_marker's indices for MPNet-like encoders, see
tagger.collator). ``fixed_padding`` reproduces the reference library's shapes (model_max_length +
2 x marker_max_length) for comparison.

The default mode also drops the candidate spans tagger.span_filter rules out; asking for fp32 by
name (the exact mode) scores every candidate, as span_marker does. In the dynamic layout, BERT-family
encoders take their passes unpadded (tagger.flat_encoder); other encoders, or an explicit
``row_capacity``, pack short passes into shared rows (tagger.collator.PackedPass).
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from tagger.collator import FlatSpanBatch, PackedPass, SpanBatch, SpanMarkerCollator, pack_passes
from tagger.configuration import PRECISIONS
from tagger.decoding import greedy_decode
from tagger.modeling import SpanMarkerModel
from tagger.span_filter import keep_mask
from tagger.tokenizer import MarkerPass, SpanMarkerTokenizer, candidate_spans
from tagger.words import Word, split_words

logger = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
DEFAULT_ROW_CAPACITY = 256


@dataclass(frozen=True)
class EntityMention:
    """An entity in raw text: ``text == original[start:end]``."""

    start: int
    end: int
    text: str
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text, "label": self.label, "score": self.score}


@dataclass(frozen=True)
class WordEntity:
    """An entity over pre-split words: ``words[word_start:word_end]``."""

    word_start: int
    word_end: int
    text: str
    label: str
    score: float

    def to_dict(self) -> dict:
        return {
            "word_start": self.word_start, "word_end": self.word_end, "text": self.text,
            "label": self.label, "score": self.score,
        }


@dataclass
class PredictStats:
    """What the last calls cost; the benchmark and the agent's metrics read it."""

    sentences: int = 0
    passes: int = 0
    batches: int = 0
    positions: int = 0  # padded positions fed to the encoder
    text_tokens: int = 0
    truncated_sentences: int = 0
    truncated_words: int = 0
    batch_seconds: list[float] = field(default_factory=list)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_precision(device: str) -> str:
    """Picked from docs/benchmarks.md: the fastest mode whose dev F1 stays within 0.5 of fp32.
    bf16 where the CPU computes it natively (emulated, it runs 5x slower than fp32); fp32
    elsewhere: int8 is 1.25x fp32 on an AVX2-only CPU but loses 0.9 dev F1 points."""
    if device.startswith("cuda"):
        return "fp16"
    return os.environ.get("TWEETNER_CPU_PRECISION", "bf16" if _cpu_has_bf16() else "fp32")


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def default_model_dir() -> Path:
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"no default model is installed at {DEFAULT_MODEL_DIR}; pass --model DIR "
            "(a span-marker directory, e.g. one written by `tweetner train`)"
        )
    return DEFAULT_MODEL_DIR


class NerTagger:
    def __init__(
        self,
        model: SpanMarkerModel,
        tokenizer: SpanMarkerTokenizer,
        *,
        device: str | None = None,
        precision: str | None = None,
        fixed_padding: bool = False,
        max_batch_positions: int | None = None,
        max_batch_rows: int = 64,
        entity_threshold: float | None = None,
        span_filter: bool | None = None,
        row_capacity: int | None = None,
        prefetch: bool | None = None,
        flat: bool | None = None,
    ) -> None:
        self.device = torch.device(device or default_device())
        # Collate (and copy to the device) the next batch on a host thread while the device runs
        # this one: on an accelerator the host work would otherwise leave it idle. On a CPU both
        # compete for the same cores, so it is off there unless asked for.
        self.prefetch = self.device.type != "cpu" if prefetch is None else prefetch
        # The exact mode (fp32 asked for by name, or the reference's fixed padding) scores every
        # candidate as span_marker does; the default mode drops the spans tagger.span_filter rules
        # out (64% of a tweet's candidates, no gold entity of the training and dev sets).
        self.span_filter = (not fixed_padding and precision != "fp32") if span_filter is None else span_filter
        self.precision = precision or default_precision(self.device.type)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        self.tokenizer = tokenizer
        self.config = model.config
        self.fixed_padding = fixed_padding
        self.model = _prepare(model, self.device, self.precision)
        self.collator = SpanMarkerCollator.for_tokenizer(tokenizer, fixed_padding=fixed_padding)
        # Encoder rows per padded batch (the reference's fixed batch size; a cap beside the position
        # budget in the dynamic layout). Flat batches have no padded rows: only the budget bounds them.
        self.max_batch_rows = max_batch_rows
        # Short passes share an encoder row up to this many positions (tagger.collator.PackedPass);
        # only where position comes from position_ids alone (the dynamic layout). 0: one per row.
        dynamic = self.collator.fixed_text_length is None and not fixed_padding
        self.row_capacity = (DEFAULT_ROW_CAPACITY if row_capacity is None else row_capacity) if dynamic else 0
        # BERT-family encoders run passes unpadded (tagger.flat_encoder) unless a padded layout is
        # asked for: the reference's fixed shapes, or explicit packing for comparison.
        self.flat = (dynamic and row_capacity is None and model.runs_flat) if flat is None else flat
        if self.flat and not (dynamic and model.runs_flat):
            raise ValueError("flat passes need a BERT-family encoder in the dynamic layout")
        # A budget on padded positions per batch bounds memory and keeps CPU batches cache-sized
        # (flat batches on a 2-core CPU: 2,048-4,096 grid positions ran 5-20% faster than 8,192).
        cpu_budget = 4096 if self.flat else 8192
        self.max_batch_positions = max_batch_positions or (65536 if self.device.type == "cuda" else cpu_budget)
        self.stats = PredictStats()
        # None: the model's own tuned threshold (if any); a negative value forces plain argmax.
        self._threshold_override = entity_threshold

    @classmethod
    def load(
        cls,
        model_dir: str | Path | None = None,
        *,
        device: str | None = None,
        precision: str | None = None,
        fixed_padding: bool = False,
        **kwargs,
    ) -> "NerTagger":
        model, tokenizer = SpanMarkerModel.from_pretrained(model_dir or default_model_dir())
        return cls(model, tokenizer, device=device, precision=precision, fixed_padding=fixed_padding, **kwargs)

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def model_version(self) -> str:
        return self.config.model_version

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    # --- public API ----------------------------------------------------------------------------
    def predict(self, texts: Sequence[str]) -> list[list[EntityMention]]:
        """Entities with character offsets into each raw text."""
        words = [split_words(text) for text in texts]
        found = self._predict_spans([[w.text for w in ws] for ws in words])
        out: list[list[EntityMention]] = []
        for text, ws, spans in zip(texts, words, found):
            out.append([_mention(text, ws, s, e, label, score) for s, e, label, score in spans])
        return out

    def predict_words(self, sentences: Sequence[Sequence[str]]) -> list[list[WordEntity]]:
        """Entities over pre-split words (CoNLL tokens, or a line split on spaces)."""
        found = self._predict_spans(sentences)
        return [
            [WordEntity(s, e, " ".join(words[s:e]), label, score) for s, e, label, score in spans]
            for words, spans in zip(sentences, found)
        ]

    # --- internals -----------------------------------------------------------------------------
    def _predict_spans(self, sentences: Sequence[Sequence[str]]) -> list[list[tuple[int, int, str, float]]]:
        scored = self.span_probabilities(sentences)
        threshold = self.entity_threshold
        return [self.decode(spans, probs, threshold) for spans, probs in scored]

    def decode(
        self, spans: np.ndarray, probs: np.ndarray, threshold: float | None
    ) -> list[tuple[int, int, str, float]]:
        """Entities from one sentence's span probabilities ``[num_spans, num_labels]``.

        Without a threshold a span takes its most probable label (span_marker's rule, the exact
        mode). With one, a span is an entity when its best entity type reaches the threshold:
        the 'outside' class dominates training, so a threshold tuned on dev trades a little
        precision for recall. The model's config carries the tuned value.
        """
        if len(spans) == 0:
            return []
        if threshold is None:
            label_ids = probs.argmax(-1)
            scores = probs.max(-1)
        else:
            entity_ids = probs[:, 1:].argmax(-1) + 1
            entity_scores = np.take_along_axis(probs, entity_ids[:, None], axis=1)[:, 0]
            label_ids = np.where(entity_scores >= threshold, entity_ids, self.config.outside_id)
            scores = entity_scores
        labels = self.config.labels
        decoded = greedy_decode(spans, scores, label_ids, self.config.outside_id)
        return [(d.start, d.end, labels[d.label_id], d.score) for d in decoded]

    @property
    def entity_threshold(self) -> float | None:
        if self._threshold_override is not None:
            return self._threshold_override if self._threshold_override >= 0 else None
        value = self.config.tweetner.get("entity_threshold")
        return None if value is None else float(value)

    def span_probabilities(self, sentences: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each sentence, its candidate spans ``[n, 2]`` and their label probabilities ``[n, C]``."""
        if not sentences:
            return []
        encoded = self.tokenizer.encode(sentences)
        max_length = self.config.entity_max_length
        all_spans = [candidate_spans(e.num_words, max_length) for e in encoded]
        if self.span_filter:
            all_spans = [spans[keep_mask(words, spans)] if len(spans) else spans
                         for words, spans in zip(sentences, all_spans)]
        rows: list[MarkerPass] = []
        truncated = 0
        for i, enc in enumerate(encoded):
            rows.extend(self._passes(i, enc, all_spans[i]) if self.span_filter else self.tokenizer.passes(i, enc))
            if enc.truncated_words:
                truncated += 1
                self.stats.truncated_words += enc.truncated_words
        if truncated:
            logger.warning(
                "%d of %d texts exceed the model window of %d tokens: their last %d words in all were not tagged",
                truncated, len(sentences), self.tokenizer.model_max_length,
                sum(e.truncated_words for e in encoded),
            )
            self.stats.truncated_sentences += truncated
        n_labels = self.config.num_labels
        probs_out = [np.zeros((len(s), n_labels), dtype=np.float32) for s in all_spans]
        if self.flat:
            batches = self._flat_batches(rows)
        else:
            batches = self._batches(pack_passes(rows, self.row_capacity) if self.row_capacity else rows)
        with torch.inference_mode():
            for batch_rows, batch in self._collated(batches):
                started = time.perf_counter()
                probs = self.model(batch).float().softmax(-1).cpu().numpy()
                for unit, unit_probs in self._per_unit(batch_rows, probs):
                    offset = 0
                    for row in unit.members if isinstance(unit, PackedPass) else (unit,):
                        lo, n = row.first_span, row.num_spans
                        probs_out[row.sentence][lo : lo + n] = unit_probs[offset : offset + n]
                        offset += n
                self.stats.batch_seconds.append(time.perf_counter() - started)
                self.stats.batches += 1
                self.stats.positions += batch.positions
        self.stats.sentences += len(sentences)
        self.stats.passes += len(rows)
        self.stats.text_tokens += sum(len(e.input_ids) for e in encoded)
        return list(zip(all_spans, probs_out))

    def _per_unit(self, units: list, probs: np.ndarray) -> Iterator[tuple[MarkerPass | PackedPass, np.ndarray]]:
        """Each row of a batch with its spans' probabilities: a padded batch's ``[B, N, C]`` by row,
        a flat batch's ``[M, C]`` by each pass's span count."""
        if not self.flat:
            yield from zip(units, probs)
            return
        offset = 0
        for row in units:
            yield row, probs[offset : offset + row.num_spans]
            offset += row.num_spans

    def _collate(self, rows: list) -> SpanBatch | FlatSpanBatch:
        batch = self.collator.flat(rows) if self.flat else self.collator(rows)
        if self.device.type == "cuda":
            # Pinned host memory lets the copy run asynchronously beside the device's work.
            batch = batch.pin_memory()
        return batch.to(self.device)

    def _collated(self, batches: Iterable[list]) -> Iterator[tuple[list, SpanBatch | FlatSpanBatch]]:
        """Each batch of rows with its collated tensors on the device; with ``prefetch``, the next
        one is collated on a host thread while the caller runs the model on this one."""
        if not self.prefetch:
            for rows in batches:
                yield rows, self._collate(rows)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger-collate") as pool:
            pending: Future | None = None
            pending_rows: list = []
            for rows in batches:
                ahead = pool.submit(self._collate, rows)
                if pending is not None:
                    yield pending_rows, pending.result()
                pending, pending_rows = ahead, rows
            if pending is not None:
                yield pending_rows, pending.result()

    def _passes(self, sentence: int, encoded, spans: np.ndarray) -> list[MarkerPass]:
        """The tokenizer's marker passes for a subset of the candidate spans (the filtered mode)."""
        if len(spans) == 0:
            return []
        per_pass = self.config.marker_max_length
        starts = encoded.word_first_token[spans[:, 0]]
        ends = encoded.word_last_token[spans[:, 1] - 1]
        shapes = self.tokenizer.span_shapes(encoded, spans)
        return [
            MarkerPass(sentence=sentence, input_ids=encoded.input_ids, start_positions=starts[lo : lo + per_pass],
                       end_positions=ends[lo : lo + per_pass], first_span=lo,
                       span_shapes=None if shapes is None else shapes[lo : lo + per_pass])
            for lo in range(0, len(spans), per_pass)
        ]

    def _flat_batches(self, rows: list[MarkerPass]) -> Iterator[list[MarkerPass]]:
        """Longest passes first, each batch up to the position budget in its attention grid (its
        passes times its longest): sorted, the grid is barely larger than the tokens."""
        batch: list[MarkerPass] = []
        longest = 0
        for row in sorted(rows, key=lambda r: r.length, reverse=True):
            if batch and (len(batch) + 1) * longest > self.max_batch_positions:
                yield batch
                batch = []
            if not batch:
                longest = row.length
            batch.append(row)
        if batch:
            yield batch

    def _batches(self, rows: list) -> Iterator[list]:
        if self.fixed_padding:
            # The reference runs fixed-size batches in input order.
            size = max(1, self.max_batch_rows)
            for i in range(0, len(rows), size):
                yield rows[i : i + size]
            return
        padded_length = self.collator.padded_length
        ordered = sorted(rows, key=lambda r: padded_length(len(r.input_ids), r.num_spans), reverse=True)
        batch: list[MarkerPass] = []
        longest_text = longest_spans = 0
        for row in ordered:
            text = max(longest_text, len(row.input_ids))
            spans = max(longest_spans, row.num_spans)
            if batch and ((len(batch) + 1) * padded_length(text, spans) > self.max_batch_positions
                          or len(batch) >= self.max_batch_rows):
                yield batch
                batch, text, spans = [], len(row.input_ids), row.num_spans
            batch.append(row)
            longest_text, longest_spans = text, spans
        if batch:
            yield batch


def _mention(text: str, words: list[Word], start: int, end: int, label: str, score: float) -> EntityMention:
    lo, hi = words[start].start, words[end - 1].end
    return EntityMention(lo, hi, text[lo:hi], label, score)


def _prepare(model: SpanMarkerModel, device: torch.device, precision: str) -> SpanMarkerModel:
    model.eval()
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only; use fp16 on GPU")
        import warnings

        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with warnings.catch_warnings():
            # torch marks eager dynamic quantization deprecated in favour of torchao; it still works
            # and keeps us from adding a dependency for one call.
            warnings.simplefilter("ignore")
            # One scale per output channel: a scale per matrix cost 3.7 dev F1 points, this 0.9
            # (docs/benchmarks.md), still too many for a default.
            return quantize_dynamic(model.float(), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                    dtype=torch.qint8)
    if precision == "fp16" and device.type == "cpu":
        logger.warning("fp16 on the CPU is slow and inexact; bf16 is the fast CPU mode")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return model.to(device=device, dtype=dtype)
