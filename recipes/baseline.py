"""Token-classification baseline: one linear head per subword on the same encoder (issue 4).

This is the comparison row for the span classifier: a plain BIO tagger on the
packaged all-MiniLM-L6-v2, trained on the same CoNLL files and scored with the
same entity-level metric. It keeps no weights; it only reports dev scores.

    python -m recipes.baseline --train ../shared/data/wnut16/train.conll \\
        --dev ../shared/data/wnut16/dev.conll --output runs/baseline
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Set before transformers is imported: the encoder is local and nothing may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    get_linear_schedule_with_warmup,
)

from tagger.collator import IGNORE_INDEX  # noqa: E402
from tagger.conll import Sentence, labels_in, read_conll, spans_from_iob2  # noqa: E402
from tagger.encoders import packaged_minilm_dir  # noqa: E402
from tagger.metrics import score_entities  # noqa: E402
from tagger.trainer import set_seed  # noqa: E402

__all__ = ["BaselineArgs", "BaselineResult", "EpochRecord", "main", "run", "train_baseline"]

logger = logging.getLogger(__name__)

MODEL_NAME = "token-classification baseline"


@dataclass
class BaselineArgs:
    train: str
    dev: str
    output: str = "runs/baseline"
    epochs: int = 6
    lr: float = 1e-4
    batch_size: int = 16  # sentences per optimizer step
    seed: int = 42
    max_steps: int | None = None  # stop early (smoke tests)
    warmup_ratio: float = 0.1
    # Same regularisation as the span trainer, so the comparison is about the head only.
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 256  # subword tokens, special tokens included
    # Intra-op threads; None keeps torch's default. On a CPU shared with another job, 1 thread
    # measured several times faster than oversubscribing the cores.
    threads: int | None = None


@dataclass
class EpochRecord:
    epoch: int
    step: int
    train_loss: float
    dev_precision: float
    dev_recall: float
    dev_f1: float
    seconds: float


@dataclass
class BaselineResult:
    best_epoch: int | None
    dev_precision: float | None
    dev_recall: float | None
    dev_f1: float | None
    train_seconds: float
    history: list[EpochRecord] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per optimizer step; not written to the JSON

    def summary(self) -> dict:
        return {
            "model": MODEL_NAME,
            "best_epoch": self.best_epoch,
            "dev_precision": self.dev_precision,
            "dev_recall": self.dev_recall,
            "dev_f1": self.dev_f1,
            "train_seconds": round(self.train_seconds, 1),
            "history": [asdict(h) for h in self.history],
        }


@dataclass
class EncodedSentence:
    input_ids: list[int]
    labels: list[int]  # label id on each word's first subword, IGNORE_INDEX elsewhere
    first_subword: list[int | None]  # per word; None when the word got no token (empty or truncated)


def label_list(sentences: Sequence[Sentence]) -> list[str]:
    """O first, then B-/I- per entity type, so ids are stable for a given corpus."""
    return ["O", *(f"{prefix}-{etype}" for etype in labels_in(sentences) for prefix in ("B", "I"))]


def load(path: str) -> list[Sentence]:
    sentences, problems = read_conll(path)
    for problem in problems:
        logger.warning("skipped malformed line %s", problem)
    if not sentences:
        raise ValueError(f"no sentences in {path}")
    return sentences


def encode(
    tokenizer: PreTrainedTokenizerFast, sentence: Sentence, label2id: dict[str, int], max_length: int
) -> EncodedSentence:
    enc = tokenizer(sentence.words, is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = enc.word_ids()
    first: list[int | None] = [None] * len(sentence.words)
    labels = [IGNORE_INDEX] * len(word_ids)
    for position, word in enumerate(word_ids):
        if word is not None and first[word] is None:
            first[word] = position
            # A dev tag whose type never occurs in train cannot be predicted; train on O instead of crashing.
            labels[position] = label2id.get(sentence.tags[word], 0)
    return EncodedSentence(enc["input_ids"], labels, first)


def collate(batch: Sequence[EncodedSentence], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sentence of this batch only: tweets are short, a fixed 256 would waste most compute."""
    width = max(len(e.input_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        input_ids[row, :n] = torch.tensor(e.input_ids)
        attention[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def decode(predicted_ids: Sequence[int], encoded: EncodedSentence, id2label: dict[int, str]) -> list[str]:
    """One tag per word, read from its first subword; words without a token are O."""
    return ["O" if pos is None else id2label[predicted_ids[pos]] for pos in encoded.first_subword]


def span_tuples(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    # spans_from_iob2 reads a stray I-x as a new entity, conlleval's convention for broken predictions.
    return [(s.start, s.end, s.label) for s in spans_from_iob2(tags)]


@torch.no_grad()
def evaluate(
    model: PreTrainedModel,
    sentences: Sequence[Sentence],
    encoded: Sequence[EncodedSentence],
    pad_id: int,
    batch_size: int,
) -> tuple[float, float, float]:
    model.eval()
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    predicted: list[list[tuple[int, int, str]]] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        batch = collate(chunk, pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for e, ids in zip(chunk, logits.argmax(-1).tolist()):
            predicted.append(span_tuples(decode(ids, e, id2label)))
    gold = [span_tuples(s.tags) for s in sentences]
    scores = score_entities(gold, predicted)
    return scores.precision, scores.recall, scores.f1


def optimizer_for(model: PreTrainedModel, args: BaselineArgs) -> torch.optim.AdamW:
    # Decaying biases and LayerNorm weights only shrinks them toward zero for no regularisation gain.
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim < 2 else decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )


def train_baseline(args: BaselineArgs, train: Sequence[Sentence], dev: Sequence[Sentence]) -> BaselineResult:
    started = time.perf_counter()
    set_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    labels = label_list(train)
    label2id = {label: i for i, label in enumerate(labels)}
    encoder_dir = packaged_minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir, use_fast=True, local_files_only=True)
    if not tokenizer.is_fast:  # word_ids() exists only on fast tokenizers
        raise RuntimeError(f"{encoder_dir} has no fast tokenizer")
    model = AutoModelForTokenClassification.from_pretrained(
        encoder_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        local_files_only=True,
    )
    logger.info("encoder %s, %d train / %d dev sentences, %d labels", encoder_dir, len(train), len(dev), len(labels))
    train_rows = [encode(tokenizer, s, label2id, args.max_length) for s in train]
    dev_rows = [encode(tokenizer, s, label2id, args.max_length) for s in dev]
    pad_id = tokenizer.pad_token_id

    steps_per_epoch = math.ceil(len(train_rows) / args.batch_size)
    total_steps = min(args.max_steps or math.inf, steps_per_epoch * args.epochs)
    optimizer = optimizer_for(model, args)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    rng = random.Random(args.seed)

    result = BaselineResult(None, None, None, None, 0.0)
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        epoch_started = time.perf_counter()
        order = list(range(len(train_rows)))
        rng.shuffle(order)
        batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
        bar = tqdm(batches, desc=f"epoch {epoch}/{args.epochs}", unit="batch", dynamic_ncols=True)
        loss_sum, seen, micro = 0.0, 0, 0
        for indices in bar:
            loss = model(**collate([train_rows[i] for i in indices], pad_id)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            micro += 1
            seen += len(indices)
            loss_sum += loss.item()
            result.losses.append(loss.item())
            elapsed = max(time.perf_counter() - epoch_started, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / micro:.4f}", sent_per_s=f"{seen / elapsed:.1f}", step=step)
            if step >= total_steps:
                break
        bar.close()
        precision, recall, f1 = evaluate(model, dev, dev_rows, pad_id, args.batch_size * 2)
        record = EpochRecord(epoch, step, loss_sum / max(micro, 1), precision, recall, f1,
                             time.perf_counter() - epoch_started)
        result.history.append(record)
        logger.info("epoch %d: loss %.4f dev P %.4f R %.4f F1 %.4f", epoch, record.train_loss, precision, recall, f1)
        if result.dev_f1 is None or f1 > result.dev_f1:
            result.best_epoch, result.dev_precision, result.dev_recall, result.dev_f1 = epoch, precision, recall, f1
        if step >= total_steps:
            break
    # Wall time of the whole run (loading and dev passes included), as the span trainer reports it.
    result.train_seconds = time.perf_counter() - started
    return result


def run(args: BaselineArgs) -> BaselineResult:
    """Train on args.train, score on args.dev, write <output>/baseline.json."""
    result = train_baseline(args, load(args.train), load(args.dev))
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "baseline.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result


def parse_args(argv: Sequence[str] | None) -> BaselineArgs:
    defaults = BaselineArgs(train="", dev="")
    p = argparse.ArgumentParser(prog="python -m recipes.baseline", description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="CoNLL training file")
    p.add_argument("--dev", required=True, help="CoNLL dev file, scored after every epoch")
    p.add_argument("--output", default=defaults.output, help="folder for baseline.json (default %(default)s)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="sentences per step")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ns = p.parse_args(argv)
    return BaselineArgs(train=ns.train, dev=ns.dev, output=ns.output, epochs=ns.epochs, lr=ns.lr,
                        batch_size=ns.batch_size, seed=ns.seed, max_steps=ns.max_steps,
                        threads=ns.threads)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run(parse_args(argv))
    print(json.dumps(result.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
