"""Packs marker passes into padded tensors with the SpanMarker attention pattern.

Row layout: ``[text (T) | start markers (S) | end markers (S)]``. Where the markers go is decided
in one place, :meth:`SpanMarkerCollator.for_tokenizer`, from the encoder's config:

- dynamic (BERT, RoBERTa...: position only from position_ids): T and S are the longest text and
  the most spans in the batch; any layout gives the same states, so the smallest one is used.
- span_marker's (MPNet, DeBERTa...: attention sees physical indices): T = model_max_length and
  S = marker_max_length, so every marker sits at the index span_marker gives it. Only the end
  marker slots after the batch's last used one are cut: no real token attends them and the
  attention of the others depends on index differences only.
- fixed padding: span_marker's full shapes (model_max_length + 2 x marker_max_length), kept for
  comparison.

Attention: text sees text; a marker sees the text, itself and its partner. Padding rows see only
themselves so that no softmax row is empty (an empty row would be NaN and poison the values of
later layers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from tagger.tokenizer import POSITION_OFFSET, MarkerPass, SpanMarkerTokenizer

IGNORE_INDEX = -100


@dataclass
class SpanBatch:
    input_ids: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, 1, L, L] bool, True = may attend
    text_length: int  # T: where the start markers begin
    marker_length: int  # S: start markers occupy [T, T+S), end markers [T+S, T+S+N)
    num_spans: torch.Tensor  # [B]
    labels: torch.Tensor | None = None  # [B, N], IGNORE_INDEX on padding
    span_shapes: torch.Tensor | None = None  # [B, N, 2] word-shape ids, 0 on padding

    @property
    def span_slots(self) -> int:
        """N: marker pairs read per row, the most spans in the batch (at most S)."""
        return int(self.num_spans.max())

    def to(self, device: torch.device | str) -> "SpanBatch":
        return SpanBatch(
            input_ids=self.input_ids.to(device, non_blocking=True),
            position_ids=self.position_ids.to(device, non_blocking=True),
            attention_mask=self.attention_mask.to(device, non_blocking=True),
            text_length=self.text_length,
            marker_length=self.marker_length,
            num_spans=self.num_spans,
            labels=None if self.labels is None else self.labels.to(device, non_blocking=True),
            span_shapes=None if self.span_shapes is None else self.span_shapes.to(device, non_blocking=True),
        )

    @property
    def positions(self) -> int:
        return int(self.input_ids.shape[0] * self.input_ids.shape[1])


class SpanMarkerCollator:
    def __init__(
        self,
        pad_token_id: int,
        start_marker_id: int,
        end_marker_id: int,
        fixed_text_length: int | None = None,
        fixed_marker_length: int | None = None,
        cut_unused_end_markers: bool = False,
    ) -> None:
        self.pad_token_id = pad_token_id
        self.start_marker_id = start_marker_id
        self.end_marker_id = end_marker_id
        self.fixed_text_length = fixed_text_length
        self.fixed_marker_length = fixed_marker_length
        self.cut_unused_end_markers = cut_unused_end_markers

    @classmethod
    def for_tokenizer(cls, tokenizer: SpanMarkerTokenizer, *, fixed_padding: bool = False) -> "SpanMarkerCollator":
        """The collator whose marker layout is exact for the tokenizer's model (see the module doc)."""
        ids = (tokenizer.pad_token_id, tokenizer.start_marker_id, tokenizer.end_marker_id)
        config = tokenizer.config
        if fixed_padding or config.positions_are_physical:
            return cls(*ids, fixed_text_length=tokenizer.model_max_length,
                       fixed_marker_length=config.marker_max_length,
                       cut_unused_end_markers=not fixed_padding)
        return cls(*ids)

    def padded_length(self, longest_text: int, most_spans: int) -> int:
        """Row length of a batch whose longest text and most spans are these."""
        T = self.fixed_text_length or longest_text
        S = self.fixed_marker_length or most_spans
        return T + S + (most_spans if self.cut_unused_end_markers else S)

    def __call__(self, rows: Sequence[MarkerPass]) -> SpanBatch:
        if not rows:
            raise ValueError("cannot collate an empty batch")
        n_text = np.fromiter((len(r.input_ids) for r in rows), dtype=np.int64, count=len(rows))
        n_spans = np.fromiter((r.num_spans for r in rows), dtype=np.int64, count=len(rows))
        T = int(self.fixed_text_length or n_text.max())
        S = int(self.fixed_marker_length or n_spans.max())
        if n_text.max() > T or n_spans.max() > S:
            raise ValueError(f"rows exceed the fixed shape ({n_text.max()} > {T} or {n_spans.max()} > {S})")
        N = int(n_spans.max())
        B, L = len(rows), T + S + (N if self.cut_unused_end_markers else S)

        input_ids = np.full((B, L), self.pad_token_id, dtype=np.int64)
        position_ids = np.zeros((B, L), dtype=np.int64)
        labels = np.full((B, N), IGNORE_INDEX, dtype=np.int64) if rows[0].labels is not None else None
        shapes = np.zeros((B, N, 2), dtype=np.int64) if rows[0].span_shapes is not None else None
        for b, row in enumerate(rows):
            t, s = n_text[b], n_spans[b]
            input_ids[b, :t] = row.input_ids
            input_ids[b, T : T + s] = self.start_marker_id
            input_ids[b, T + S : T + S + s] = self.end_marker_id
            position_ids[b, :t] = np.arange(t)
            position_ids[b, T : T + s] = row.start_positions
            position_ids[b, T + S : T + S + s] = row.end_positions
            if labels is not None:
                labels[b, :s] = row.labels
            if shapes is not None:
                shapes[b, :s] = row.span_shapes
        position_ids += POSITION_OFFSET

        mask = _attention_mask(torch.from_numpy(n_text), torch.from_numpy(n_spans), T, S, L)
        return SpanBatch(
            input_ids=torch.from_numpy(input_ids),
            position_ids=torch.from_numpy(position_ids),
            attention_mask=mask,
            text_length=T,
            marker_length=S,
            num_spans=torch.from_numpy(n_spans),
            labels=None if labels is None else torch.from_numpy(labels),
            span_shapes=None if shapes is None else torch.from_numpy(shapes),
        )


def _attention_mask(n_text: torch.Tensor, n_spans: torch.Tensor, T: int, S: int, L: int) -> torch.Tensor:
    B = len(n_text)
    pos = torch.arange(L)
    is_text = pos[None, :] < n_text[:, None]  # [B, L]
    marker_slot = torch.where(pos < T, -1, (pos - T) % max(S, 1))  # pair index of a marker position
    is_marker = (pos[None, :] >= T) & (marker_slot[None, :] < n_spans[:, None])
    pair = torch.where(is_marker, marker_slot[None, :].expand(B, L), -1)  # [B, L]

    attends_text = (is_text | is_marker)[:, :, None] & is_text[:, None, :]
    same_pair = (pair[:, :, None] == pair[:, None, :]) & is_marker[:, :, None]
    padding_self = (~(is_text | is_marker))[:, :, None] & torch.eye(L, dtype=torch.bool)[None]
    return (attends_text | same_pair | padding_self)[:, None, :, :]
