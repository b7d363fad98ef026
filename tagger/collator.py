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
- flat (:meth:`SpanMarkerCollator.flat`, inference on BERT-family encoders): no rows at all, the
  passes' tokens one after the other; tagger.flat_encoder gives attention grids of its own (each
  pass's queries, each pass's text keys) and no L x L mask is built.

Attention: text sees text; a marker sees the text, itself and its partner. Padding rows see only
themselves so that no softmax row is empty (an empty row would be NaN and poison the values of
later layers).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import torch

from tagger.tokenizer import POSITION_OFFSET, MarkerPass, RowSize, SpanMarkerTokenizer

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

    def pin_memory(self) -> "SpanBatch":
        return replace(self, input_ids=self.input_ids.pin_memory(), position_ids=self.position_ids.pin_memory(),
                       attention_mask=self.attention_mask.pin_memory())


@dataclass
class FlatSpanBatch:
    """Marker passes as one unpadded token sequence (tagger.flat_encoder): pass ``p``'s tokens are
    its text, its start markers, then its end markers. Attention sees two grids: every token's
    query in row ``p`` of a ``[P, L]`` grid, the pass's text keys in row ``p`` of a ``[P, T]`` one."""

    input_ids: torch.Tensor  # [N]
    position_ids: torch.Tensor  # [N]
    slots: torch.Tensor  # [N]: each token's index in the flattened [P, L] query grid
    text_tokens: torch.Tensor  # [Nt]: the token index of every text token, pass by pass
    text_slots: torch.Tensor  # [Nt]: each text token's index in the flattened [P, T] key grid
    text_keys: torch.Tensor  # [P, 1, 1, T] bool: True where row p of the key grid holds a text token
    start_index: torch.Tensor  # [M]: the token index of each span's start marker, pass by pass
    end_index: torch.Tensor  # [M]
    num_spans: np.ndarray  # [P]
    grid_length: int  # L: the longest pass
    span_shapes: torch.Tensor | None = None  # [M, 2]

    @property
    def positions(self) -> int:
        """Tokens the projections and feed-forward layers run over (no padding)."""
        return int(self.input_ids.shape[0])

    @property
    def passes(self) -> int:
        return int(self.text_keys.shape[0])

    def to(self, device: torch.device | str) -> "FlatSpanBatch":
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> "FlatSpanBatch":
        return self._map(torch.Tensor.pin_memory)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "FlatSpanBatch":
        """A copy with ``fn`` applied to every tensor (num_spans stays on the host)."""
        names = ("input_ids", "position_ids", "slots", "text_tokens", "text_slots", "text_keys", "start_index",
                 "end_index", "span_shapes")
        return replace(self, **{n: fn(getattr(self, n)) for n in names if getattr(self, n) is not None})


@dataclass
class PackedPass(RowSize):
    """Several marker passes in one encoder row (dynamic layout only): their texts one after the
    other, then their start markers, then their end markers. Each text restarts its positions at 0
    and sees only itself; each marker sees its own pass's text, itself and its partner: every pass
    computes what it would alone, without the padding a row of its own would need."""

    members: list[MarkerPass]
    input_ids: np.ndarray  # the texts, concatenated
    text_positions: np.ndarray  # position of each text token within its own text
    text_segments: np.ndarray  # member index of each text token
    start_positions: np.ndarray  # concatenated; positions within each member's own text
    end_positions: np.ndarray
    span_segments: np.ndarray  # member index of each span
    span_shapes: np.ndarray | None = None
    labels: None = None

    @classmethod
    def of(cls, members: Sequence[MarkerPass]) -> "PackedPass":
        members = list(members)
        texts = [len(m.input_ids) for m in members]
        shapes = [m.span_shapes for m in members]
        return cls(
            members=members,
            input_ids=np.concatenate([m.input_ids for m in members]),
            text_positions=np.concatenate([np.arange(t) for t in texts]),
            text_segments=np.repeat(np.arange(len(members)), texts),
            start_positions=np.concatenate([m.start_positions for m in members]),
            end_positions=np.concatenate([m.end_positions for m in members]),
            span_segments=np.repeat(np.arange(len(members)), [m.num_spans for m in members]),
            span_shapes=None if shapes[0] is None else np.concatenate(shapes),
        )


def pack_passes(rows: Sequence[MarkerPass], capacity: int) -> list[MarkerPass | PackedPass]:
    """First-fit decreasing into rows of about ``capacity`` positions.

    A batch pads its text part to the longest text and its marker part to the most spans, so rows
    are filled in both at the proportion of this call's passes (about one span per text token for
    filtered tweets): rows that are full in both pad to nearly nothing. A pass larger than a row's
    share in either part gets a row of its own.
    """
    if not rows:
        return []
    text = sum(len(r.input_ids) for r in rows)
    spans = sum(r.num_spans for r in rows)
    ratio = spans / max(text, 1)
    text_cap = max(1, int(capacity / (1 + 2 * ratio)))
    span_cap = max(1, int(text_cap * ratio))
    bins: list[list[MarkerPass]] = []
    room: list[list[int]] = []
    for row in sorted(rows, key=lambda r: r.length, reverse=True):
        t, s = len(row.input_ids), row.num_spans
        for i, (t_left, s_left) in enumerate(room):
            if t <= t_left and s <= s_left:
                bins[i].append(row)
                room[i][0] -= t
                room[i][1] -= s
                break
        else:
            bins.append([row])
            room.append([text_cap - t, span_cap - s])
    return [b[0] if len(b) == 1 else PackedPass.of(b) for b in bins]


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

    def __call__(self, rows: Sequence[MarkerPass | PackedPass]) -> SpanBatch:
        if not rows:
            raise ValueError("cannot collate an empty batch")
        if any(isinstance(r, PackedPass) for r in rows):
            return self._packed(rows)
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

    def flat(self, rows: Sequence[MarkerPass]) -> FlatSpanBatch:
        """The passes unpadded, for tagger.flat_encoder (dynamic layout only)."""
        if not rows:
            raise ValueError("cannot collate an empty batch")
        if self.fixed_text_length or self.fixed_marker_length or self.cut_unused_end_markers:
            raise ValueError("flat batches need the dynamic layout (position from position_ids only)")
        n_text = np.fromiter((len(r.input_ids) for r in rows), dtype=np.int64, count=len(rows))
        n_spans = np.fromiter((r.num_spans for r in rows), dtype=np.int64, count=len(rows))
        lengths = n_text + 2 * n_spans
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        P, L, N = len(rows), int(lengths.max()), int(lengths.sum())
        input_ids = np.empty(N, dtype=np.int64)
        position_ids = np.empty(N, dtype=np.int64)
        for row, o, t, s in zip(rows, offsets.tolist(), n_text.tolist(), n_spans.tolist()):
            input_ids[o : o + t] = row.input_ids
            input_ids[o + t : o + t + s] = self.start_marker_id
            input_ids[o + t + s : o + t + 2 * s] = self.end_marker_id
            position_ids[o : o + t] = np.arange(t)
            position_ids[o + t : o + t + s] = row.start_positions
            position_ids[o + t + s : o + t + 2 * s] = row.end_positions
        position_ids += POSITION_OFFSET
        slots = np.repeat(np.arange(P) * L - offsets, lengths) + np.arange(N)
        T, n_text_tokens = int(n_text.max()), int(n_text.sum())
        text_start = np.cumsum(n_text) - n_text  # where each pass's text begins among all text tokens
        within = np.arange(n_text_tokens) - np.repeat(text_start, n_text)
        starts = np.repeat(offsets + n_text - np.cumsum(n_spans) + n_spans, n_spans) + np.arange(int(n_spans.sum()))
        shapes = [r.span_shapes for r in rows]
        return FlatSpanBatch(
            input_ids=torch.from_numpy(input_ids),
            position_ids=torch.from_numpy(position_ids),
            slots=torch.from_numpy(slots),
            text_tokens=torch.from_numpy(np.repeat(offsets, n_text) + within),
            text_slots=torch.from_numpy(np.repeat(np.arange(P) * T, n_text) + within),
            text_keys=torch.from_numpy(np.arange(T)[None, :] < n_text[:, None])[:, None, None, :],
            start_index=torch.from_numpy(starts),
            end_index=torch.from_numpy(starts + np.repeat(n_spans, n_spans)),
            num_spans=n_spans,
            grid_length=L,
            span_shapes=None if shapes[0] is None else torch.from_numpy(np.concatenate(shapes)),
        )

    def _packed(self, rows: Sequence[MarkerPass | PackedPass]) -> SpanBatch:
        if self.fixed_text_length or self.fixed_marker_length or self.cut_unused_end_markers:
            raise ValueError("packed passes need the dynamic layout (position from position_ids only)")
        rows = [r if isinstance(r, PackedPass) else PackedPass.of([r]) for r in rows]
        n_text = np.fromiter((len(r.input_ids) for r in rows), dtype=np.int64, count=len(rows))
        n_spans = np.fromiter((r.num_spans for r in rows), dtype=np.int64, count=len(rows))
        T, S = int(n_text.max()), int(n_spans.max())
        B, L = len(rows), T + 2 * S
        input_ids = np.full((B, L), self.pad_token_id, dtype=np.int64)
        position_ids = np.zeros((B, L), dtype=np.int64)
        segment = np.full((B, L), -1, dtype=np.int64)  # member index of each position, -1 = padding
        shapes = np.zeros((B, S, 2), dtype=np.int64) if rows[0].span_shapes is not None else None
        for b, row in enumerate(rows):
            t, s = n_text[b], n_spans[b]
            input_ids[b, :t] = row.input_ids
            input_ids[b, T : T + s] = self.start_marker_id
            input_ids[b, T + S : T + S + s] = self.end_marker_id
            position_ids[b, :t] = row.text_positions
            position_ids[b, T : T + s] = row.start_positions
            position_ids[b, T + S : T + S + s] = row.end_positions
            segment[b, :t] = row.text_segments
            segment[b, T : T + s] = row.span_segments
            segment[b, T + S : T + S + s] = row.span_segments
            if shapes is not None:
                shapes[b, :s] = row.span_shapes
        position_ids += POSITION_OFFSET
        seg = torch.from_numpy(segment)
        pos = torch.arange(L)
        valid = seg >= 0
        is_text = valid & (pos < T)[None, :]
        pair = torch.where(valid & (pos >= T)[None, :], (pos - T) % max(S, 1), -1)
        # a valid position sees the text of its own pass; a marker also its pair; padding itself
        sees_text = (seg[:, :, None] == seg[:, None, :]) & valid[:, :, None] & is_text[:, None, :]
        same_pair = (pair[:, :, None] == pair[:, None, :]) & (pair >= 0)[:, :, None]
        padding_self = (~valid)[:, :, None] & torch.eye(L, dtype=torch.bool)[None]
        return SpanBatch(
            input_ids=torch.from_numpy(input_ids),
            position_ids=torch.from_numpy(position_ids),
            attention_mask=(sees_text | same_pair | padding_self)[:, None],
            text_length=T,
            marker_length=S,
            num_spans=torch.from_numpy(n_spans),
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
