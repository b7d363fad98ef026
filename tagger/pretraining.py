"""Domain-adaptive pretraining of an encoder with SpanBERT's objective (issue 8, item 4).

SpanBERT masks contiguous spans of whole words (lengths drawn from a geometric distribution,
15% of the tokens in all) and trains two heads on them: the masked-language-model head predicts
each masked token from its own state, and the span-boundary objective (SBO) predicts it from the
states of the two tokens just outside the span plus the token's position inside it. The SBO is
what a span classifier needs: a span's meaning summarised at its boundaries, which is where the
span-marker model's start and end markers sit.

The output is a plain Hugging Face encoder directory (weights and tokenizer, no heads), so
``tweetner train --encoder DIR`` fine-tunes from it like from any other encoder. Training is
seeded and resumable (``resume/state.pt`` every ``save_every`` steps, ``resume=True``).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

IGNORE = -100


@dataclass
class PretrainingArgs:
    texts: list[list[str]]  # tweets as words
    output: str
    encoder: str | None = None  # local HF directory; None = packaged MiniLM
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    mask_ratio: float = 0.15
    geometric_p: float = 0.2  # span lengths in words ~ Geometric(p), clipped at max_span
    max_span: int = 10
    max_length: int = 64  # word pieces per tweet, [CLS] and [SEP] included
    seed: int = 42
    save_every: int = 200
    resume: bool = False
    stop_after_steps: int | None = None  # end this invocation at the first checkpoint after N steps


@dataclass(frozen=True)
class MaskedSpan:
    start: int  # first masked token (word-piece index in the row)
    end: int  # exclusive


def mask_spans(word_ids: Sequence[int | None], rng: np.random.Generator, ratio: float, p: float,
               max_span: int) -> list[MaskedSpan]:
    """Spans of whole words to mask in one row, about ``ratio`` of its word pieces, never touching
    each other (so every span has an unmasked token on each side: [CLS] and [SEP] at the ends)."""
    words: dict[int, list[int]] = {}
    for token, word in enumerate(word_ids):
        if word is not None:
            words.setdefault(word, []).append(token)
    order = sorted(words)
    n_tokens = sum(len(t) for t in words.values())
    budget = max(1, round(ratio * n_tokens)) if n_tokens else 0
    taken = np.zeros(len(order) + 2, dtype=bool)  # padded by one word each side
    spans: list[MaskedSpan] = []
    masked, attempts = 0, 0
    while masked < budget and attempts < 10 * len(order):
        attempts += 1
        length = min(int(rng.geometric(p)), max_span, len(order))
        first = int(rng.integers(0, len(order) - length + 1))
        # The span and a free word on either side: masked spans never merge into one.
        if taken[first : first + length + 2].any():
            continue
        tokens = [t for w in order[first : first + length] for t in words[w]]
        if masked + len(tokens) > budget + max(1, budget // 2):
            continue
        taken[first + 1 : first + length + 1] = True
        spans.append(MaskedSpan(tokens[0], tokens[-1] + 1))
        masked += len(tokens)
    return sorted(spans, key=lambda s: s.start)


class SpanBertHeads(nn.Module):
    """The MLM and SBO heads over an encoder; both decode through its word embeddings."""

    def __init__(self, encoder: nn.Module, max_span: int) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.mlm = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.position = nn.Embedding(max_span * 4, hidden)  # a word may take several pieces
        self.sbo = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(), nn.LayerNorm(hidden),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.bias = nn.Parameter(torch.zeros(encoder.config.vocab_size))

    def _vocab(self, states: torch.Tensor) -> torch.Tensor:
        return states @ self.encoder.get_input_embeddings().weight.T + self.bias

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(MLM loss, SBO loss) over the batch's masked tokens."""
        states = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        rows, cols = batch["masked_row"], batch["masked_col"]
        targets = batch["targets"]
        if len(targets) == 0:
            zero = states.sum() * 0.0
            return zero, zero
        mlm = nn.functional.cross_entropy(self._vocab(self.mlm(states[rows, cols])), targets)
        boundary = torch.cat([states[rows, batch["left"]], states[rows, batch["right"]],
                              self.position(batch["offset"].clamp(max=self.position.num_embeddings - 1))], -1)
        sbo = nn.functional.cross_entropy(self._vocab(self.sbo(boundary)), targets)
        return mlm, sbo


def make_batch(tokenizer, texts: Sequence[list[str]], rng: np.random.Generator, args: PretrainingArgs,
               vocab_size: int) -> dict[str, torch.Tensor]:
    """Tokenised tweets with their spans masked SpanBERT's way: per span, 80% [MASK], 10% random
    tokens, 10% unchanged; the targets are the original pieces."""
    enc = tokenizer(list(texts), is_split_into_words=True, truncation=True, max_length=args.max_length,
                    padding=True, return_tensors="np")
    input_ids = enc["input_ids"].copy()
    rows, cols, targets, left, right, offset = [], [], [], [], [], []
    for b in range(len(texts)):
        for span in mask_spans(enc.word_ids(b), rng, args.mask_ratio, args.geometric_p, args.max_span):
            positions = np.arange(span.start, span.end)
            targets.extend(input_ids[b, positions].tolist())
            choice = rng.random()
            if choice < 0.8:
                input_ids[b, positions] = tokenizer.mask_token_id
            elif choice < 0.9:
                input_ids[b, positions] = rng.integers(1000, vocab_size, len(positions))
            rows.extend([b] * len(positions))
            cols.extend(positions.tolist())
            left.extend([span.start - 1] * len(positions))
            right.extend([span.end] * len(positions))
            offset.extend(range(len(positions)))
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return {"input_ids": torch.from_numpy(input_ids).long(), "attention_mask": torch.from_numpy(enc["attention_mask"]).long(),
            "masked_row": as_long(rows), "masked_col": as_long(cols), "targets": as_long(targets),
            "left": as_long(left), "right": as_long(right), "offset": as_long(offset)}


def _state_args(args: PretrainingArgs) -> dict:
    return {k: v for k, v in asdict(args).items() if k not in ("texts", "resume", "stop_after_steps")}


def pretrain(args: PretrainingArgs) -> Path | None:
    """Runs (or resumes) the pretraining; returns the saved encoder directory (None when
    ``stop_after_steps`` ended it early: resume it later)."""
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    from tagger.encoders import resolve_encoder

    out = Path(args.output)
    state_file = out / "resume" / "state.pt"
    encoder_dir = resolve_encoder(args.encoder)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), use_fast=True, local_files_only=True)
    encoder = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True, add_pooling_layer=False)
    model = SpanBertHeads(encoder, args.max_span)
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * args.steps), args.steps)
    rng = np.random.default_rng(args.seed)
    order = random.Random(args.seed)
    step, losses = 0, []
    if args.resume:
        if not state_file.is_file():
            raise FileNotFoundError(f"nothing to resume: {state_file} does not exist (start without --resume)")
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        if state["args"] != _state_args(args):
            changed = sorted(k for k in state["args"] if state["args"][k] != _state_args(args).get(k))
            raise ValueError(f"resume needs the same options as the run in {out}; these differ: {', '.join(changed)}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        order.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        step, losses = state["step"], state["losses"]
        logger.info("resuming %s at step %d of %d", out, step, args.steps)
    indices: list[int] = []
    first_step = step
    model.train()
    started = time.perf_counter()
    while step < args.steps:
        if len(indices) < args.batch_size:
            fresh = list(range(len(args.texts)))
            order.shuffle(fresh)
            indices += fresh
        chosen, indices = indices[: args.batch_size], indices[args.batch_size :]
        batch = make_batch(tokenizer, [args.texts[i] for i in chosen], rng, args, encoder.config.vocab_size)
        mlm, sbo = model(batch)
        loss = mlm + sbo
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        losses.append((round(mlm.item(), 4), round(sbo.item(), 4)))
        if step % 50 == 0 or step == args.steps:
            recent = losses[-50:]
            logger.info("step %d/%d: MLM %.3f, SBO %.3f (%.0f s)", step, args.steps,
                        sum(m for m, _ in recent) / len(recent), sum(s for _, s in recent) / len(recent),
                        time.perf_counter() - started)
        if step % args.save_every == 0 or step == args.steps:
            # Each checkpoint starts a fresh permutation of the tweets, so a run resumed from it
            # draws the same batches as an unbroken one.
            state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_file.with_suffix(".tmp")
            torch.save({"args": _state_args(args), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "numpy_rng": rng.bit_generator.state,
                        "python_rng": order.getstate(), "torch_rng": torch.get_rng_state(), "step": step,
                        "losses": losses}, tmp)
            tmp.replace(state_file)
            indices = []
            if args.stop_after_steps is not None and step - first_step >= args.stop_after_steps and step < args.steps:
                logger.info("stopped after step %d; continue with resume", step)
                return None
    target = out / "encoder"
    encoder.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target
