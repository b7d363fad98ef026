"""A plain re-statement of span_marker 1.8's inference, for any encoder family, from a checkpoint
directory: the reference our exact mode must match.

It shares no code with ``tagger``: the encoder is rebuilt from the nested config with eager
attention, the tokenizer is loaded with ``add_prefix_space=True`` as span_marker loads it, and
every row has span_marker's physical layout: text padded to model_max_length, start markers from
model_max_length, end markers from model_max_length + marker_max_length, row length
model_max_length + 2 x marker_max_length, a per-row [L, L] mask in which padding sees nothing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

POSITION_OFFSET = 2  # span_marker adds 2 to every position id


class ReferenceSpanMarker:
    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        self.types = [label for _, label in sorted((int(k), v) for k, v in config["id2label"].items())]
        self.entity_max_length = int(config["entity_max_length"])
        self.marker_max_length = int(config["marker_max_length"])
        encoder_config = {k: v for k, v in config["encoder"].items()
                          if k not in ("model_type", "_name_or_path", "transformers_version")}
        encoder_config = AutoConfig.for_model(config["encoder"]["model_type"], **encoder_config)
        self.encoder = AutoModel.from_config(encoder_config, attn_implementation="eager").eval()
        state = load_file(str(directory / "model.safetensors"))
        self.encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")},
                                     strict=False)
        weight, bias = state["classifier.weight"], state["classifier.bias"]
        self.classifier = torch.nn.Linear(weight.shape[1], weight.shape[0])
        self.classifier.load_state_dict({"weight": weight, "bias": bias})
        self.uses_token_types = bool(config["encoder"].get("type_vocab_size"))
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(directory), add_prefix_space=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.model_max_length = min(self.tokenizer.model_max_length, int(config["model_max_length"]))
        self.start_id, self.end_id = self.tokenizer.convert_tokens_to_ids(["<start>", "<end>"])

    def span_probabilities(self, sentences: Sequence[Sequence[str]], rows_per_batch: int = 8
                           ) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Each sentence's candidate spans (word start, end exclusive) and their label probabilities."""
        rows, out = [], []
        for i, words in enumerate(sentences):
            spans, groups = self.passes(list(words))
            out.append((spans, np.zeros((len(spans), len(self.types)), dtype=np.float32)))
            rows += [(i, *g) for g in groups]
        for lo in range(0, len(rows), rows_per_batch):
            batch = rows[lo : lo + rows_per_batch]
            probs = self._run([r[2:] for r in batch])
            for (i, first, *_), p in zip(batch, probs):
                out[i][1][first : first + len(p)] = p
        return out

    def tokens(self, words: Sequence[str]) -> list[int]:
        return self.tokenizer(list(words), is_split_into_words=True, truncation=True,
                              max_length=self.model_max_length)["input_ids"]

    def passes(self, words: list[str]):
        enc = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.model_max_length)
        ids = enc["input_ids"]
        num_words = max(w for w in enc.word_ids() if w is not None) + 1
        spans = [(s, e) for s in range(num_words) for e in range(s + 1, min(num_words, s + self.entity_max_length) + 1)]
        groups = []
        for first in range(0, len(spans), self.marker_max_length):
            group = spans[first : first + self.marker_max_length]
            starts = [enc.word_to_tokens(s).start for s, _ in group]
            ends = [enc.word_to_tokens(e - 1).end - 1 for _, e in group]
            groups.append((first, ids, starts, ends))
        return spans, groups

    def row_tensors(self, rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """span_marker's ``input_ids``, ``position_ids`` [B, L] and 0/1 attention mask [B, L, L]."""
        M, S = self.model_max_length, self.marker_max_length
        L = M + 2 * S
        input_ids = torch.full((len(rows), L), self.tokenizer.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((len(rows), L), dtype=torch.long)
        mask = torch.zeros((len(rows), L, L))
        for b, (ids, starts, ends) in enumerate(rows):
            t, n = len(ids), len(starts)
            input_ids[b, :t] = torch.tensor(ids)
            input_ids[b, M : M + n] = self.start_id
            input_ids[b, M + S : M + S + n] = self.end_id
            position_ids[b, :t] = torch.arange(t) + POSITION_OFFSET
            position_ids[b, M : M + n] = torch.tensor(starts) + POSITION_OFFSET
            position_ids[b, M + S : M + S + n] = torch.tensor(ends) + POSITION_OFFSET
            mask[b, :t, :t] = 1
            for k in range(n):
                a, e = M + k, M + S + k
                mask[b, a, :t] = mask[b, e, :t] = 1
                mask[b, a, a] = mask[b, a, e] = mask[b, e, a] = mask[b, e, e] = 1
        return input_ids, position_ids, mask

    def _run(self, rows) -> list[np.ndarray]:
        M, S = self.model_max_length, self.marker_max_length
        input_ids, position_ids, mask = self.row_tensors(rows)
        additive = (1.0 - mask)[:, None] * torch.finfo(torch.float32).min
        kwargs = {"token_type_ids": torch.zeros_like(input_ids)} if self.uses_token_types else {}
        with torch.no_grad():
            hidden = self.encoder(input_ids=input_ids, attention_mask=additive, position_ids=position_ids,
                                  **kwargs)[0]
            out = []
            for b, (_, starts, _) in enumerate(rows):
                n = len(starts)
                features = torch.cat([hidden[b, M : M + n], hidden[b, M + S : M + S + n]], dim=-1)
                out.append(self.classifier(features).softmax(-1).numpy())
        return out

    def entities(self, spans: list[tuple[int, int]], probs: np.ndarray) -> list[tuple[int, int, str]]:
        """span_marker's decoding: most probable label per span, then greedy by score without overlap."""
        labels, scores = probs.argmax(-1), probs.max(-1)
        num_words = max((e for _, e in spans), default=0)
        taken = [False] * num_words
        found = []
        for (s, e), score, label in sorted(zip(spans, scores, labels), key=lambda t: t[1], reverse=True):
            if label != 0 and not any(taken[s:e]):
                taken[s:e] = [True] * (e - s)
                found.append((s, e, self.types[label]))
        return sorted(found)
