"""Fine-tuning a Hugging Face token classifier (`tweetner train --arch token-classification`):
a BIO head on a local encoder, each word's loss on its first subword, the best dev epoch saved
with ``save_pretrained``, so the directory is an ordinary transformers checkpoint."""
from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from tagger.backends.targets import allowed_tags, epoch_texts, load_training_corpora, tag_list
from tagger.conll import Sentence, read_conll
from tagger.corpora import TrainingText

log = logging.getLogger(__name__)


@dataclass
class TokenClassificationArgs:
    train: list[str]
    output: str
    dev: str | None = None
    encoder: str | None = None  # local encoder directory (default: the packaged MiniLM)
    epochs: int = 6
    batch_size: int = 16
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 256
    patience: int = 3
    seed: int = 42
    max_steps: int | None = None
    device: str | None = None
    save_dtype: str = "float32"
    model_name: str | None = None
    model_version: str | None = None


@dataclass
class TokenClassificationResult:
    output: Path
    best_epoch: int | None
    best_dev_f1: float | None
    seconds: float
    history: list[dict] = field(default_factory=list)


def _encode(tokenizer, texts: Sequence[TrainingText], tags: list[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer([t.words for t in texts], is_split_into_words=True, truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    # allowed[b, position, tag]; positions other than a word's first subword carry no loss.
    allowed = torch.zeros(*enc["input_ids"].shape, len(tags), dtype=torch.bool)
    scored = torch.zeros(enc["input_ids"].shape, dtype=torch.bool)
    for b, text in enumerate(texts):
        may = torch.from_numpy(allowed_tags(text, tags))
        seen: set[int] = set()
        for pos, word in enumerate(enc.word_ids(b)):
            if word is None or word in seen:
                continue
            seen.add(word)
            allowed[b, pos] = may[word]
            scored[b, pos] = True
    inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return {**inputs, "allowed": allowed, "scored": scored}


def train(args: TokenClassificationArgs, on_epoch: Callable[[dict], None] | None = None) -> TokenClassificationResult:
    from transformers import AutoConfig, AutoModelForTokenClassification, get_linear_schedule_with_warmup

    from tagger.backends.token_classification import TokenClassificationTagger, load_word_tokenizer
    from tagger.encoders import packaged_minilm_dir
    from tagger.evaluation import evaluate
    from tagger.inference import default_device

    started = time.perf_counter()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or default_device())
    dev_sents: list[Sentence] = [s for s in read_conll(args.dev)[0] if s.words] if args.dev else []
    corpora = load_training_corpora(args.train, dev_sents)
    tags = tag_list(corpora)
    encoder = Path(args.encoder) if args.encoder else packaged_minilm_dir()
    tokenizer = load_word_tokenizer(encoder)
    config = AutoConfig.from_pretrained(str(encoder), local_files_only=True)
    config.id2label, config.label2id = dict(enumerate(tags)), {t: i for i, t in enumerate(tags)}
    model = AutoModelForTokenClassification.from_pretrained(str(encoder), config=config,
                                                            local_files_only=True).to(device)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    per_epoch = math.ceil(sum(len(epoch_texts([c], random.Random(0))) for c in corpora) / args.batch_size)
    total = min(args.max_steps or per_epoch * args.epochs, per_epoch * args.epochs)
    schedule = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total), total)
    rng = random.Random(args.seed)
    out = Path(args.output)
    history: list[dict] = []
    best_f1, best_epoch, bad, step = -1.0, None, 0, 0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        texts = epoch_texts(corpora, rng)
        rng.shuffle(texts)
        losses = []
        for lo in range(0, len(texts), args.batch_size):
            batch = _encode(tokenizer, texts[lo : lo + args.batch_size], tags, args.max_length)
            allowed, scored = batch.pop("allowed").to(device), batch.pop("scored").to(device)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
            log_probs = logits.log_softmax(-1)
            # -log of the probability on the tags a word may have (one tag for fully labelled text)
            word_loss = -torch.logsumexp(log_probs.masked_fill(~allowed, -1e4), dim=-1)
            loss = word_loss[scored].mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            step += 1
            if args.max_steps and step >= args.max_steps:
                break
        model.eval()
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else 0.0,
                  "dev_precision": None, "dev_recall": None, "dev_f1": None}
        if dev_sents:
            tagger = TokenClassificationTagger(model, tokenizer, device=str(device), precision="fp32")
            scores = evaluate(tagger, dev_sents).scores
            record.update(dev_precision=scores.precision, dev_recall=scores.recall, dev_f1=scores.f1)
        record["seconds"] = round(time.perf_counter() - t0, 1)
        history.append(record)
        log.info("epoch %d loss %.3f dev F1 %s (%.0fs)", epoch, record["train_loss"], record["dev_f1"],
                 record["seconds"])
        if on_epoch:
            on_epoch(record)
        f1 = record["dev_f1"]
        if f1 is None or f1 > best_f1:
            best_f1, best_epoch, bad = (f1 if f1 is not None else best_f1), epoch, 0
            _save(model, tokenizer, out, args, history)
        else:
            bad += 1
            if bad >= args.patience:
                break
        if args.max_steps and step >= args.max_steps:
            break
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["tweetner"].update({"history": history, "best_epoch": best_epoch,
                               "train_seconds": round(time.perf_counter() - started, 1)})
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    from tagger.backends.card import write_card

    write_card(out)
    return TokenClassificationResult(out, best_epoch, best_f1 if dev_sents else None,
                                     time.perf_counter() - started, history)


def _save(model, tokenizer, out: Path, args: TokenClassificationArgs, history: list[dict]) -> None:
    import hashlib

    out.mkdir(parents=True, exist_ok=True)
    dtype = {"float16": torch.float16, "float32": torch.float32}[args.save_dtype]
    model.to(dtype).save_pretrained(str(out))
    model.to(torch.float32)
    tokenizer.save_pretrained(str(out))
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()[:12]
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["tweetner"] = {
        "architecture": "token-classification",
        "model_name": args.model_name or "tweetner-token-classification",
        "model_version": args.model_version or f"tc-{digest}",
        "training_args": {k: v for k, v in asdict(args).items() if k != "output"},
        "history": history,
    }
    config_path.write_text(json.dumps(config, indent=2) + "\n")
