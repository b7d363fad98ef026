"""A BERT-family encoder over unpadded marker passes (inference).

The padded layouts (tagger.collator) run every projection and feed-forward over padding, and every
attention query over a whole row: a packed row holds about 256 positions where a query needs the
35 or so of its own pass (17-22% of an fp32 forward on a 2-core CPU went to that attention). Here a
batch's passes travel as one flat sequence of tokens through the embeddings, projections and
feed-forward layers; only attention sees a grid, one row per pass padded to the batch's longest
pass, with the SpanMarker pattern (:func:`tagger.collator.pass_attention_mask`). The last layer's
output projection and feed-forward run for the markers alone: the classifier reads nothing else.

The encoder's own submodules do the work, so this is the same function (to float rounding) and
quantized copies run unchanged. It applies to encoders whose position comes from position_ids
alone and whose layers are BERT's (BERT, RoBERTa and their relatives); others keep the padded
layouts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


def marker_states(encoder: nn.Module, batch: FlatSpanBatch) -> torch.Tensor:
    """Last-layer states ``[2M, hidden]``: the batch's start markers, then its end markers."""
    if encoder.training:
        # Attention dropout has no place here; training keeps the padded layouts.
        raise ValueError("flat batches are for inference: call model.eval() first")
    ids = batch.input_ids[None]
    x = encoder.embeddings(input_ids=ids, position_ids=batch.position_ids[None],
                           token_type_ids=torch.zeros_like(ids))[0]
    markers = torch.cat((batch.start_index, batch.end_index))
    layers = encoder.encoder.layer
    for i, layer in enumerate(layers):
        x = _layer(layer, x, batch, markers if i == len(layers) - 1 else None)
    return x


def _layer(layer: nn.Module, x: torch.Tensor, batch: FlatSpanBatch, keep: torch.Tensor | None) -> torch.Tensor:
    attention = layer.attention.self
    heads, width = attention.num_attention_heads, attention.attention_head_size
    rows, length = batch.attention_mask.shape[0], batch.attention_mask.shape[2]
    slots = batch.slots

    def grid(values: torch.Tensor) -> torch.Tensor:  # [N, H*D] -> [P, H, L, D]
        out = values.new_zeros(rows * length, values.shape[-1]).index_copy_(0, slots, values)
        return out.view(rows, length, heads, width).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        grid(attention.query(x)), grid(attention.key(x)), grid(attention.value(x)),
        attn_mask=batch.attention_mask, scale=getattr(attention, "scaling", width ** -0.5),
    )
    context = context.transpose(1, 2).reshape(rows * length, heads * width)
    if keep is not None:
        slots, x = slots.index_select(0, keep), x.index_select(0, keep)
    context = context.index_select(0, slots)
    attended = layer.attention.output(context, x)
    return layer.output(layer.intermediate(attended), attended)
