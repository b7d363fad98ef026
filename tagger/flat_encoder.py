"""A BERT-family encoder over unpadded marker passes (inference).

The padded layouts (tagger.collator) run every projection and feed-forward over padding, and every
attention query over a whole row: a packed row holds about 256 positions where a query needs the
35 or so of its own pass. Here a batch's passes travel as one flat sequence of tokens through the
embeddings, projections and feed-forward layers. The last layer's output projection and
feed-forward run for the markers alone: the classifier reads nothing else.

Attention follows from the SpanMarker pattern (text sees text; a marker sees the text, itself and
its partner) without ever building an L x L mask:

- every query of a pass (text and markers) attends the pass's text keys: one fused attention over a
  grid of queries ``[P, L]`` against a grid of text keys ``[P, T]``, which also returns each
  query's log-sum-exp. A text query's result is final.
- a marker's two other keys (itself and its partner) are two dot products per head, merged into its
  text result by log-sum-exp weights: the softmax over text + 2 keys, exactly.

On a tweet (33 text tokens, 35 spans after the filter) the full pattern scored 103 keys per query
where this scores 33 + 2, which made attention a sixth of an fp32 forward on a 2-core CPU.

The encoder's own submodules do the work, so this is the same function (to float rounding) and
quantized copies run unchanged. It applies to encoders whose position comes from position_ids
alone and whose layers are BERT's (BERT, RoBERTa and their relatives); others keep the padded
layouts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tagger.collator import FlatSpanBatch

# Families whose layers are BERT's (self-attention with query/key/value, an output block, an
# intermediate and an output feed-forward) and whose positions are absolute embeddings.
FLAT_FAMILIES = frozenset({"bert", "roberta", "xlm-roberta", "camembert"})


def supports_flat(encoder: nn.Module) -> bool:
    config = encoder.config
    if config.model_type not in FLAT_FAMILIES:
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute" or config.is_decoder:
        return False
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not layers or not hasattr(encoder, "embeddings"):
        return False
    layer = layers[0]
    return all(hasattr(layer, name) for name in ("attention", "intermediate", "output")) and \
        all(hasattr(layer.attention.self, name) for name in ("query", "key", "value", "attention_head_size"))


@dataclass(frozen=True)
class MarkerIndex:
    """What every layer's attention needs of a batch beyond its grids, built once per batch."""

    markers: torch.Tensor  # [2M]: token index of each start marker, then each end marker
    marker_slots: torch.Tensor  # [2M]: each marker's index in the flattened [P, L] query grid
    key_mask: torch.Tensor  # [P, 1, 1, T]: 0 at a text key, -inf at padding (what the fused kernel takes)

    @classmethod
    def of(cls, batch: FlatSpanBatch, dtype: torch.dtype) -> "MarkerIndex":
        markers = torch.cat((batch.start_index, batch.end_index))
        key_mask = torch.zeros(batch.text_keys.shape, dtype=dtype, device=batch.text_keys.device)
        return cls(markers=markers, marker_slots=batch.slots.index_select(0, markers),
                   key_mask=key_mask.masked_fill_(~batch.text_keys, float("-inf")))


def marker_states(encoder: nn.Module, batch: FlatSpanBatch) -> torch.Tensor:
    """Last-layer states ``[2M, hidden]``: the batch's start markers, then its end markers."""
    if encoder.training:
        # Attention dropout has no place here; training keeps the padded layouts.
        raise ValueError("flat batches are for inference: call model.eval() first")
    ids = batch.input_ids[None]
    x = encoder.embeddings(input_ids=ids, position_ids=batch.position_ids[None],
                           token_type_ids=torch.zeros_like(ids))[0]
    index = MarkerIndex.of(batch, x.dtype)
    layers = encoder.encoder.layer
    for i, layer in enumerate(layers):
        x = _layer(layer, x, batch, index, last=i == len(layers) - 1)
    return x


def _layer(layer: nn.Module, x: torch.Tensor, batch: FlatSpanBatch, index: MarkerIndex, *,
           last: bool) -> torch.Tensor:
    attention = layer.attention.self
    heads, width = attention.num_attention_heads, attention.attention_head_size
    scale = getattr(attention, "scaling", width ** -0.5)
    q, k, v = attention.query(x), attention.key(x), attention.value(x)
    context = span_marker_attention(q, k, v, batch, index, heads=heads, scale=scale)
    if last:
        context, x = context.index_select(0, index.markers), x.index_select(0, index.markers)
    attended = layer.attention.output(context, x)
    return layer.output(layer.intermediate(attended), attended)


def span_marker_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, batch: FlatSpanBatch,
                          index: MarkerIndex, *, heads: int, scale: float) -> torch.Tensor:
    """Attention ``[N, H*D]`` over flat tokens ``q, k, v: [N, H*D]`` with the SpanMarker pattern."""
    hidden = q.shape[1]
    width = hidden // heads
    rows, length, text_length = batch.passes, batch.grid_length, index.key_mask.shape[-1]
    markers = index.markers

    def grid(values: torch.Tensor, slots: torch.Tensor, cols: int) -> torch.Tensor:  # -> [P, H, cols, D]
        out = values.new_zeros(rows * cols, hidden).index_copy_(0, slots, values)
        return out.view(rows, cols, heads, width).transpose(1, 2)

    text = batch.text_tokens
    out, lse = _attend(grid(q, batch.slots, length), grid(k.index_select(0, text), batch.text_slots, text_length),
                       grid(v.index_select(0, text), batch.text_slots, text_length), index.key_mask, scale)
    context = out.transpose(1, 2).reshape(rows * length, hidden).index_select(0, batch.slots)
    # Each marker's softmax over its text keys, itself and its partner, merged in fp32.
    text_lse = lse.transpose(1, 2).reshape(rows * length, heads).index_select(0, index.marker_slots).float()

    def pick(values: torch.Tensor, at: torch.Tensor) -> torch.Tensor:  # -> [2M, H, D] fp32
        return values.index_select(0, at).view(-1, heads, width).float()

    query, own_k, own_v = pick(q, markers), pick(k, markers), pick(v, markers)
    # Markers run starts then ends, so a marker's partner sits half the list away.
    half = own_k.shape[0] // 2
    pair_k, pair_v = own_k.roll(half, 0), own_v.roll(half, 0)
    own = (query * own_k).sum(-1) * scale
    pair = (query * pair_k).sum(-1) * scale
    top = torch.maximum(torch.maximum(text_lse, own), pair)
    w_text, w_own, w_pair = (text_lse - top).exp_(), (own - top).exp_(), (pair - top).exp_()
    total = w_text + w_own + w_pair
    merged = (w_text.div_(total).unsqueeze(-1) * pick(context, markers)
              + w_own.div_(total).unsqueeze(-1) * own_v
              + w_pair.div_(total).unsqueeze(-1) * pair_v)
    return context.index_copy_(0, markers, merged.view(-1, hidden).to(context.dtype))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor,
            scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention ``[P, H, L, D]`` and each query's log-sum-exp ``[P, H, L]``."""
    if q.device.type == "cpu" and q.dtype in (torch.float32, torch.bfloat16):
        # The fused CPU kernel never materialises the scores and hands back the log-sum-exp.
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=key_mask, scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)).float().mul_(scale).add_(key_mask)
    lse = scores.logsumexp(-1)
    return torch.matmul((scores - lse.unsqueeze(-1)).exp_().to(v.dtype), v), lse
