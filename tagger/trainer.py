"""Fine-tuning a span-marker model on CoNLL files, selecting the best epoch on dev F1."""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from tagger.collator import IGNORE_INDEX, SpanMarkerCollator
from tagger.conll import Sentence, read_conll
from tagger.corpora import Corpus, TrainingText, drop_overlap, load_corpus, model_types, parse_spec
from tagger.encoders import resolve_encoder
from tagger.evaluation import evaluate
from tagger.imbalance import focal_nll, type_counts, type_weights
from tagger.inference import NerTagger, default_device
from tagger.modeling import SpanMarkerModel
from tagger.tokenizer import MarkerPass, SpanMarkerTokenizer, candidate_spans

logger = logging.getLogger(__name__)


@dataclass
class TrainingArgs:
    train: list[str]
    output: str
    dev: str | None = None
    encoder: str | None = None  # local HF directory; None = packaged MiniLM
    init_model: str | None = None  # start from this span-marker checkpoint instead of a fresh head
    epochs: int = 10
    batch_size: int = 16  # marker passes per optimizer micro-batch
    grad_accum: int = 1
    lr: float = 1e-4  # encoder
    head_lr: float = 1e-3  # classifier
    layer_decay: float = 1.0  # multiply the LR by this per layer below the top
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    dropout: float = 0.1
    label_smoothing: float = 0.0
    tune_threshold: bool = True  # pick the entity decision threshold on dev after training
    negative_rate: float = 1.0  # share of outside spans (beyond near misses) drawn each epoch
    outside_weight: float = 1.0  # loss weight of the O class relative to entity types
    class_weight_power: float = 0.0  # >0: rare entity types weigh more (tagger.imbalance)
    focal_gamma: float = 0.0  # >0: examples the model already gets right weigh less (tagger.imbalance)
    entity_max_length: int = 8
    marker_max_length: int = 128
    model_max_length: int = 256
    patience: int = 3  # epochs without dev F1 gain before stopping
    seed: int = 42
    device: str | None = None
    precision: str = "fp32"  # fp32 | bf16 (autocast, CPU or GPU) | fp16 (autocast + scaler, GPU)
    max_steps: int | None = None  # stop early (smoke tests)
    save_dtype: str = "float32"  # float16 for the shipped model
    model_name: str | None = None
    model_version: str | None = None
    word_shape_dim: int = 0  # >0: embed the span's boundary word shapes (tagger/shapes.py)
    strip_hashtags: bool = False  # the encoder reads "#Apple" as "Apple"; the span keeps the "#"
    resume: bool = False  # continue the run in ``output`` from its last finished epoch
    stop_after_epochs: int | None = None  # end this invocation after N epochs (resume later)


# Arguments that may differ between a run and its resumption.
_RESUMABLE_DIFFERENCES = {"resume", "stop_after_epochs", "device"}
RESUME_DIR = "resume"


@dataclass
class EpochResult:
    epoch: int
    step: int
    train_loss: float
    dev_precision: float | None
    dev_recall: float | None
    dev_f1: float | None
    seconds: float


@dataclass
class TrainingResult:
    output: Path
    best_epoch: int | None
    best_dev_f1: float | None
    history: list[EpochResult] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # per optimizer step
    seconds: float = 0.0
    skipped_entities: int = 0
    finished: bool = True  # False when stop_after_epochs ended the invocation before the last epoch


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_sentences(paths: Sequence[str]) -> list[Sentence]:
    sentences: list[Sentence] = []
    for path in paths:
        found, problems = read_conll(path)
        for problem in problems:
            logger.warning("skipped malformed line %s", problem)
        sentences.extend(found)
    return sentences


@dataclass
class TrainingSentence:
    """A training sentence encoded once; marker rows are drawn from it every epoch."""

    index: int
    encoded: object  # EncodedWords
    span_labels: np.ndarray  # target id per candidate span (see TargetTable)
    always_keep: np.ndarray  # bool per span: gold entities and the negatives that overlap them
    share: float = 1.0  # chance that the sentence is drawn in an epoch (its corpus's epoch_share)


class TargetTable:
    """Training targets: a label id, or a *set* of label ids a span may have (partial labels).

    Ids below ``num_labels`` are single labels; each distinct set of two or more labels gets an id
    above them, so marker rows and batches keep carrying one integer per span.
    """

    def __init__(self, label2id: dict[str, int]) -> None:
        self.label2id = label2id
        self.num_labels = len(label2id)
        self._sets: dict[frozenset[int], int] = {}

    def target(self, allowed: frozenset[str]) -> int:
        unknown = sorted(allowed - set(self.label2id))
        if unknown:
            raise ValueError(f"training labels {unknown} are not among the model's {sorted(self.label2id)}")
        ids = frozenset(self.label2id[a] for a in allowed)
        if len(ids) == 1:
            return next(iter(ids))
        return self.num_labels + self._sets.setdefault(ids, len(self._sets))

    @property
    def has_sets(self) -> bool:
        return bool(self._sets)

    def allowed_matrix(self) -> torch.Tensor:
        """Bool ``[num_labels + sets, num_labels]``: which labels each target admits."""
        table = torch.zeros(self.num_labels + len(self._sets), self.num_labels, dtype=torch.bool)
        table[torch.arange(self.num_labels), torch.arange(self.num_labels)] = True
        for ids, k in self._sets.items():
            table[self.num_labels + k, sorted(ids)] = True
        return table


def prepare_sentences(
    tokenizer: SpanMarkerTokenizer, texts: Sequence[TrainingText], targets: TargetTable,
    shares: dict[str, float] | None = None,
) -> tuple[list[TrainingSentence], int]:
    """Encode and label every candidate span; returns how many gold entities no candidate reaches."""
    encoded = tokenizer.encode([t.words for t in texts])
    prepared: list[TrainingSentence] = []
    unreachable = 0
    max_len = tokenizer.config.entity_max_length
    for i, (text, enc) in enumerate(zip(texts, encoded)):
        spans = candidate_spans(enc.num_words, max_len)
        labels = np.full(len(spans), targets.target(text.outside), dtype=np.int64)
        keep = np.zeros(len(spans), dtype=bool)
        index = {(int(a), int(b)): k for k, (a, b) in enumerate(spans)}
        for gold in text.spans:
            k = index.get((gold.start, gold.end))
            if k is None:
                unreachable += 1
                continue
            labels[k] = targets.target(gold.allowed)
            # Near misses (partial overlaps with a gold span) teach boundaries: never sample them away.
            keep |= (spans[:, 0] < gold.end) & (spans[:, 1] > gold.start)
        share = (shares or {}).get(text.corpus, 1.0)
        prepared.append(TrainingSentence(i, enc, labels, keep, share))
    return prepared, unreachable


def span_loss(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor,
              weights: torch.Tensor, focal_gamma: float = 0.0) -> torch.Tensor:
    """Negative log of the probability mass on each span's allowed labels, weighted (and scaled
    by the focal term when ``focal_gamma`` > 0).

    For a single-label target this is the cross-entropy; for a set it does not say which member
    is right, only that the others are wrong.
    """
    flat = logits.float().reshape(-1, logits.shape[-1])
    t = targets.reshape(-1)
    valid = t != IGNORE_INDEX
    flat, t = flat[valid], t[valid]
    if len(t) == 0:
        return flat.sum() * 0.0
    mask = allowed[t]
    nll = torch.logsumexp(flat, -1) - torch.logsumexp(flat.masked_fill(~mask, float("-inf")), -1)
    w = weights[t]
    return (focal_nll(nll, focal_gamma) * w).sum() / w.sum()


def draw_rows(
    tokenizer: SpanMarkerTokenizer,
    prepared: Sequence[TrainingSentence],
    negative_rate: float,
    rng: np.random.Generator,
) -> list[MarkerPass]:
    """Marker rows for one epoch: all entity spans and near misses, plus a fresh random share of the
    other (outside) spans. Markers never attend to each other, so dropping a span does not change
    how any other span is computed: sampling only rebalances the loss and saves positions."""
    rows: list[MarkerPass] = []
    per_pass = tokenizer.config.marker_max_length
    for sent in prepared:
        n = len(sent.span_labels)
        if n == 0:
            continue
        if sent.share < 1 and rng.random() >= sent.share:
            continue
        keep = sent.always_keep | (rng.random(n) < negative_rate) if negative_rate < 1 else np.ones(n, dtype=bool)
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            continue
        spans = candidate_spans(sent.encoded.num_words, tokenizer.config.entity_max_length)[idx]
        starts = sent.encoded.word_first_token[spans[:, 0]]
        ends = sent.encoded.word_last_token[spans[:, 1] - 1]
        labels = sent.span_labels[idx]
        shapes = tokenizer.span_shapes(sent.encoded, spans)
        for lo in range(0, len(idx), per_pass):
            rows.append(MarkerPass(sent.index, sent.encoded.input_ids, starts[lo : lo + per_pass],
                                   ends[lo : lo + per_pass], lo, labels[lo : lo + per_pass],
                                   None if shapes is None else shapes[lo : lo + per_pass]))
    return rows


def batches_by_length(rows: list[MarkerPass], batch_size: int, rng: random.Random) -> list[list[MarkerPass]]:
    """Shuffled batches of similar-length rows, so dynamic padding wastes little."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for lo in range(0, len(order), pool):
        chunk = sorted(order[lo : lo + pool], key=lambda i: rows[i].length)
        batches += [[rows[i] for i in chunk[j : j + batch_size]] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def parameter_groups(model: SpanMarkerModel, args: TrainingArgs) -> list[dict]:
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    n_layers = int(model.config.encoder.get("num_hidden_layers") or 0)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(("classifier.", "shape_embedding.")):
            lr = args.head_lr
        else:
            depth = _layer_index(name, n_layers)
            lr = args.lr * (args.layer_decay ** (n_layers - depth))
        wd = 0.0 if any(k in name for k in no_decay) else args.weight_decay
        groups.setdefault((lr, wd), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


def _layer_index(name: str, n_layers: int) -> int:
    """0 for embeddings, i+1 for encoder layer i, n_layers for anything above."""
    if ".embeddings." in name or name.startswith("encoder.embeddings"):
        return 0
    parts = name.split(".")
    for a, b in zip(parts, parts[1:]):
        if a in ("layer", "layers") and b.isdigit():
            return int(b) + 1
    return n_layers


def load_corpora(args: TrainingArgs, dev_sentences: Sequence[Sentence]) -> list[Corpus]:
    corpora = [load_corpus(spec) for spec in args.train]
    for corpus in corpora:
        for problem in corpus.problems:
            logger.warning("%s: skipped malformed line %s", corpus.path, problem)
        if dev_sentences:
            corpus.texts, dropped = drop_overlap(corpus.texts, dev_sentences)
            if dropped:
                logger.warning("%s: dropped %d tweets that repeat a dev tweet", corpus.path, dropped)
        if corpus.dropped_mentions:
            logger.info("%s: %d labelled @mentions trained as outside", corpus.path, corpus.dropped_mentions)
        if corpus.unmapped:
            logger.warning("%s: labels without a mapping, not trained: %s", corpus.path, corpus.unmapped)
        logger.info("corpus %s: %d tweets, epoch share %.2f", corpus.name, len(corpus.texts), corpus.epoch_share)
    if not any(c.texts for c in corpora):
        raise ValueError(f"no training sentences in {args.train}")
    return corpora


def _build_model(args: TrainingArgs, labels: list[str], encoder_dir: Path) -> tuple[SpanMarkerModel, SpanMarkerTokenizer]:
    if args.init_model:
        # Continue from a span-marker checkpoint (a second stage at a lower LR, or a new domain).
        model, tokenizer = SpanMarkerModel.from_pretrained(args.init_model)
        missing = sorted(set(labels) - set(model.config.labels))
        if missing:
            raise ValueError(f"{args.init_model} has labels {model.config.labels[1:]}; the data also has {missing}")
        # What described the old weights (their version, threshold, history, measured speed).
        for key in ("model_version", "threshold_sweep", "entity_threshold", "history", "throughput",
                    "dev_per_type", "dev_f1_shipped"):
            model.config.tweetner.pop(key, None)
        if args.word_shape_dim and not model.config.word_shape_dim:
            model.add_word_shapes(args.word_shape_dim)
        if args.strip_hashtags:
            model.config.tweetner["strip_hashtags"] = True
        return model, tokenizer
    return SpanMarkerModel.from_encoder(
        encoder_dir, labels, model_max_length=args.model_max_length,
        marker_max_length=args.marker_max_length, entity_max_length=args.entity_max_length,
        dropout=args.dropout, word_shape_dim=args.word_shape_dim, strip_hashtags=args.strip_hashtags,
    )


def _checkpoint_args(args: TrainingArgs) -> dict:
    return {k: v for k, v in asdict(args).items() if k not in _RESUMABLE_DIFFERENCES}


def _save_checkpoint(path: Path, state: dict) -> None:
    """Atomically, so that a session killed mid-write leaves the previous epoch's checkpoint."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "state.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(path / "state.pt")


def train(args: TrainingArgs, on_epoch: Callable[[EpochResult], None] | None = None) -> TrainingResult:
    started = time.perf_counter()
    set_seed(args.seed)
    device = torch.device(args.device or default_device())
    dev_sentences = load_sentences([args.dev]) if args.dev else []
    corpora = load_corpora(args, dev_sentences)
    texts = [t for c in corpora for t in c.texts]
    labels = ["O", *model_types(corpora)]
    encoder_dir = resolve_encoder(args.encoder)
    logger.info("encoder %s, %d train / %d dev sentences, labels %s", encoder_dir, len(texts),
                len(dev_sentences), labels[1:])
    model, tokenizer = _build_model(args, labels, encoder_dir)
    labels = model.config.labels
    model.config.tweetner.update({
        "model_name": args.model_name or f"span-marker-{encoder_dir.name}",
        "training": {k: v for k, v in asdict(args).items() if k not in ("output", "resume", "stop_after_epochs")},
    })
    model.to(device)
    targets = TargetTable(model.config.label2id)
    prepared, unreachable = prepare_sentences(tokenizer, texts, targets, {c.name: c.epoch_share for c in corpora})
    np_rng = np.random.default_rng(args.seed)
    rows = draw_rows(tokenizer, prepared, args.negative_rate, np_rng)
    if unreachable:
        logger.warning("%d training entities are longer than entity_max_length=%d words or truncated: "
                       "they are trained as O", unreachable, tokenizer.config.entity_max_length)
    # The same layout as inference, so that a physical-position encoder (MPNet) trains on the
    # marker indices span_marker will give it.
    collator = SpanMarkerCollator.for_tokenizer(tokenizer)
    rng = random.Random(args.seed)
    steps_per_epoch = math.ceil(math.ceil(len(rows) / args.batch_size) / args.grad_accum)
    total_steps = args.max_steps or steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(parameter_groups(model, args))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    class_weights = torch.ones(len(labels), device=device)
    class_weights[0] = args.outside_weight
    if args.class_weight_power:
        weights = type_weights(type_counts(texts), labels, args.class_weight_power)
        for label, weight in weights.items():
            class_weights[model.config.label2id[label]] = weight
        logger.info("type weights: %s", ", ".join(f"{t} {w:.2f}" for t, w in sorted(weights.items())))
    loss_fn = nn.CrossEntropyLoss(weight=class_weights, ignore_index=IGNORE_INDEX, label_smoothing=args.label_smoothing)
    allowed = targets.allowed_matrix().to(device)
    # A set target weighs as much as a plain entity span.
    target_weights = torch.ones(allowed.shape[0], device=device)
    target_weights[: len(labels)] = class_weights
    if (targets.has_sets or args.focal_gamma) and args.label_smoothing:
        logger.warning("label smoothing is not applied with partial labels or the focal term")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" and device.type == "cuda" else None

    result = TrainingResult(output=Path(args.output), best_epoch=None, best_dev_f1=None)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    step = 0
    first_epoch = 1
    checkpoint_dir = Path(args.output) / RESUME_DIR
    if args.resume:
        state_file = checkpoint_dir / "state.pt"
        if not state_file.is_file():
            raise FileNotFoundError(f"nothing to resume: {state_file} does not exist (start without --resume)")
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        if state["args"] != _checkpoint_args(args):
            changed = sorted(k for k in state["args"] if state["args"][k] != _checkpoint_args(args).get(k))
            raise ValueError(f"--resume needs the same training options as the run in {args.output}; "
                             f"these differ: {', '.join(changed)}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng.setstate(state["python_rng"])
        np_rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, stale, best_state = state["step"], state["stale"], state["best_state"]
        result.best_epoch, result.best_dev_f1 = state["best_epoch"], state["best_dev_f1"]
        result.history = [EpochResult(**h) for h in state["history"]]
        result.losses = list(state["losses"])
        first_epoch = state["epoch"] + 1
        logger.info("resuming %s after epoch %d (step %d, best dev F1 %s)", args.output, state["epoch"], step,
                    result.best_dev_f1)
    epochs_this_run = 0
    # A run that stopped early (patience, max_steps) has nothing left to train when resumed.
    if args.resume and state.get("stopped"):
        first_epoch = args.epochs + 1
    redraw = args.negative_rate < 1 or any(p.share < 1 for p in prepared)
    for epoch in range(first_epoch, args.epochs + 1):
        if args.stop_after_epochs is not None and epochs_this_run >= args.stop_after_epochs:
            result.finished = False
            break
        model.train()
        epoch_started = time.perf_counter()
        if epoch > 1 and redraw:
            rows = draw_rows(tokenizer, prepared, args.negative_rate, np_rng)
        batches = batches_by_length(rows, args.batch_size, rng)
        bar = tqdm(batches, desc=f"epoch {epoch}/{args.epochs}", unit="batch", dynamic_ncols=True)
        running, loss_sum, seen_rows, micro = 0.0, 0.0, 0, 0
        for batch_rows in bar:
            batch = collator(batch_rows).to(device)
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(batch)
            if targets.has_sets or args.focal_gamma:
                loss = span_loss(logits, batch.labels, allowed, target_weights, args.focal_gamma) / args.grad_accum
            else:
                loss = loss_fn(logits.float().reshape(-1, len(labels)), batch.labels.reshape(-1)) / args.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            micro += 1
            seen_rows += len(batch_rows)
            loss_sum += loss.item() * args.grad_accum
            running = loss_sum / micro
            if micro % args.grad_accum == 0:
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                result.losses.append(loss.item() * args.grad_accum)
            elapsed = time.perf_counter() - epoch_started
            bar.set_postfix(loss=f"{running:.4f}", rows_per_s=f"{seen_rows / max(elapsed, 1e-9):.1f}", step=step)
            if args.max_steps and step >= args.max_steps:
                break
        bar.close()
        epoch_result = EpochResult(epoch, step, running, None, None, None, 0.0)
        if dev_sentences:
            model.eval()
            evaluation = evaluate(NerTagger(model, tokenizer, device=str(device), precision="fp32"), dev_sentences)
            s = evaluation.scores
            epoch_result.dev_precision, epoch_result.dev_recall, epoch_result.dev_f1 = s.precision, s.recall, s.f1
            logger.info("epoch %d: loss %.4f dev P %.4f R %.4f F1 %.4f", epoch, running, s.precision, s.recall, s.f1)
            if result.best_dev_f1 is None or s.f1 > result.best_dev_f1:
                result.best_dev_f1, result.best_epoch, stale = s.f1, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                # On disk too, so an interrupted run still leaves its best epoch behind.
                model.config.tweetner.update({"best_epoch": epoch, "best_dev_f1": s.f1})
                model.save_pretrained(args.output, tokenizer)
            else:
                stale += 1
        epoch_result.seconds = time.perf_counter() - epoch_started
        result.history.append(epoch_result)
        epochs_this_run += 1
        stopped_early = bool(args.max_steps and step >= args.max_steps) or bool(
            dev_sentences and stale >= args.patience)
        _save_checkpoint(checkpoint_dir, {
            "args": _checkpoint_args(args), "epoch": epoch, "step": step, "stale": stale,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "python_rng": rng.getstate(), "numpy_rng": np_rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "best_state": best_state, "best_epoch": result.best_epoch, "best_dev_f1": result.best_dev_f1,
            "history": [asdict(h) for h in result.history], "losses": result.losses, "stopped": stopped_early,
        })
        if on_epoch:
            on_epoch(epoch_result)
        if args.max_steps and step >= args.max_steps:
            break
        if dev_sentences and stale >= args.patience:
            logger.info("no dev F1 gain for %d epochs: stopping", stale)
            break
    if not result.finished:
        logger.info("stopped after %d epochs this run; continue with --resume", epochs_this_run)
        result.seconds = time.perf_counter() - started
        return result

    if best_state is not None:
        model.load_state_dict(best_state)
    if dev_sentences and args.tune_threshold:
        from tagger.calibration import best_threshold, sweep_thresholds

        model.eval()
        sweep = sweep_thresholds(NerTagger(model, tokenizer, device=str(device), precision="fp32"), dev_sentences)
        chosen = best_threshold(sweep)
        model.config.tweetner["entity_threshold"] = chosen.threshold
        model.config.tweetner["threshold_sweep"] = [asdict(r) for r in sweep]
        logger.info("entity threshold %s: dev P %.4f R %.4f F1 %.4f", chosen.threshold, chosen.precision,
                    chosen.recall, chosen.f1)
    result.seconds = time.perf_counter() - started
    result.skipped_entities = unreachable
    model.config.tweetner.update({
        "best_epoch": result.best_epoch,
        "best_dev_f1": result.best_dev_f1,
        "history": [asdict(h) for h in result.history],
        "train_seconds": round(result.seconds, 1),
        "train_files": [str(p) for p in args.train],
        "dev_file": args.dev,
    })
    if args.model_version:
        model.config.tweetner["model_version"] = args.model_version
    else:
        # The loader names unversioned models by their weights' digest, which is reproducible.
        model.config.tweetner.pop("model_version", None)
    model.eval()
    dtype = {"float32": torch.float32, "float16": torch.float16}[args.save_dtype]
    model.save_pretrained(args.output, tokenizer, dtype=dtype)
    (Path(args.output) / "training_log.json").write_text(json.dumps(
        {"args": asdict(args), "history": [asdict(h) for h in result.history], "seconds": result.seconds,
         "unreachable_entities": unreachable}, indent=2))
    try:
        from tagger.model_card import write_model_card

        write_model_card(args.output, model.config, load_sentences([parse_spec(spec)[0] for spec in args.train]))
    except ImportError:
        pass
    return result
