"""Continuations of the shipped model (docs/model.md): self-training and rare-type weights,
each against one control run with the same settings and seed.

Self-training: does training on the model's own confident tags pay?

1. Tag the raw tweets in ../shared/data/tweets with a trained model (the shipped default unless
   ``--model``) and keep the tweets it is sure about everywhere: every entity it decodes scores at
   least ``--keep-entity``, and no other candidate span that overlaps none of them reaches
   ``--doubt`` for any entity type; of the sure tweets without any entity, a quarter as many as
   those with one are kept (``--empty-ratio``). A tweet with one unsure span is dropped whole, because its
   'outside' spans would teach the model to miss what it was unsure about.
2. Continue training that model on WNUT16 train + WNUT15 dev + a fresh share of the kept tweets
   each epoch (a label map with ``epoch_share``), and, as the control, on WNUT16 train + WNUT15
   dev alone with the same settings and seed; both select their best epoch on WNUT16 dev and
   tune the entity threshold there.
3. Type weights (``--runs type-weights``): the control's data with rare entity types weighing
   more in the loss (``class_weight_power`` 0.5, tagger.imbalance).

Every step is resumable (`--resume`): the pseudo-labelled file is kept, training checkpoints each
epoch. Not part of CI; about 5 minutes of tagging per 10,000 tweets and 10-20 minutes per epoch on
one CPU core.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from recipes.default_model import DATA, SHARED, STAGE_6, _stage, stage_5_data
from tagger.inference import DEFAULT_MODEL_DIR, NerTagger
from tagger.trainer import TrainingArgs
from tagger.words import split_words

logger = logging.getLogger(__name__)
RAW = SHARED / "tweets"
# The control is the recipe's stage 6 from the shipped model.
CONTINUATION = STAGE_6


def raw_tweets(limit: int | None) -> list[list[str]]:
    """The raw tweets as words, once each: retweets repeat a text many times."""
    seen: set[str] = set()
    out: list[list[str]] = []
    for path in sorted(RAW.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = [w.text for w in split_words(line)]
            key = " ".join(words).lower()
            if words and key not in seen:
                seen.add(key)
                out.append(words)
    return out[:limit] if limit else out


def confident_tags(tagger: NerTagger, sentences: list[list[str]], keep_entity: float,
                   doubt: float, batch: int = 256) -> list[tuple[list[str], list[str]]]:
    """(words, BIO tags) of the tweets the model is sure about everywhere."""
    kept: list[tuple[list[str], list[str]]] = []
    threshold = tagger.entity_threshold
    for lo in range(0, len(sentences), batch):
        chunk = sentences[lo : lo + batch]
        for words, (spans, probs) in zip(chunk, tagger.span_probabilities(chunk)):
            entities = tagger.decode(spans, probs, threshold)
            if any(score < keep_entity for *_, score in entities):
                continue
            covered = [False] * len(words)
            for start, end, _, _ in entities:
                covered[start:end] = [True] * (end - start)
            unsure = False
            for (start, end), row in zip(spans, probs):
                if not any(covered[start:end]) and row[1:].max() >= doubt:
                    unsure = True
                    break
            if unsure:
                continue
            tags = ["O"] * len(words)
            for start, end, label, _ in entities:
                tags[start] = f"B-{label}"
                tags[start + 1 : end] = [f"I-{label}"] * (end - start - 1)
            kept.append((words, tags))
        logger.info("tagged %d of %d raw tweets, kept %d", lo + len(chunk), len(sentences), len(kept))
    return kept


def write_pseudo(path: Path, tagged: list[tuple[list[str], list[str]]], labels: list[str], share: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for words, tags in tagged:
            out.writelines(f"{w}\t{t}\n" for w, t in zip(words, tags))
            out.write("\n")
    mapping = path.with_suffix(".json")
    types = [label for label in labels if label != "O"]
    mapping.write_text(json.dumps({
        "name": "self-training",
        "about": "the model's own confident tags on raw tweets: our ten types as they are",
        "labels": {t: [t] for t in types}, "outside": ["O"], "epoch_share": share}, indent=2))
    return mapping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="the teacher, and the start of every run")
    parser.add_argument("--output", default="runs/self-training")
    parser.add_argument("--limit", type=int, default=None, help="tag at most this many raw tweets")
    parser.add_argument("--keep-entity", type=float, default=0.8)
    parser.add_argument("--doubt", type=float, default=0.2)
    parser.add_argument("--empty-ratio", type=float, default=0.25,
                        help="sure tweets without entities kept, per sure tweet with one")
    parser.add_argument("--share", type=float, default=0.5, help="share of the kept tweets drawn each epoch")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--runs", nargs="+", choices=("self-training", "control", "type-weights"),
                        default=["self-training", "control", "type-weights"], help="which runs (default all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    pseudo = out / "pseudo.conll"
    mapping = pseudo.with_suffix(".json")
    if "self-training" in args.runs and not (args.resume and mapping.is_file()):
        teacher = NerTagger.load(args.model, device="cpu")
        sentences = raw_tweets(args.limit)
        kept = confident_tags(teacher, sentences, args.keep_entity, args.doubt)
        # Most sure tweets hold no entity; all of them would mostly teach the model to miss more.
        tagged = [k for k in kept if any(t != "O" for t in k[1])]
        empty = [k for k in kept if all(t == "O" for t in k[1])]
        kept = tagged + empty[: int(len(tagged) * args.empty_ratio)]
        write_pseudo(pseudo, kept, teacher.labels, args.share)
        entities = sum(t.startswith("B-") for _, tags in kept for t in tags)
        logger.info("kept %d of %d tweets (%d entities) in %s", len(kept), len(sentences), entities, pseudo)
    dev = str(DATA / "dev.conll")
    runs = {"self-training": (stage_5_data() + [f"{pseudo}:{mapping}"], {}),
            "control": (stage_5_data(), {}),
            "type-weights": (stage_5_data(), {"class_weight_power": 0.5})}
    runs = {name: run for name, run in runs.items() if name in args.runs}
    results = {}
    for name, (train_files, changes) in runs.items():
        settings = TrainingArgs(train=train_files, dev=dev, output=str(out / name), init_model=args.model,
                                resume=args.resume, **(CONTINUATION | changes))
        _stage(settings)
        tuned = json.loads((out / name / "config.json").read_text())["tweetner"]
        results[name] = {k: tuned.get(k) for k in ("best_epoch", "best_dev_f1", "entity_threshold")}
        results[name]["threshold_dev_f1"] = max((r["f1"] for r in tuned.get("threshold_sweep", [])), default=None)
    print(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "resume"},
                      "continuation": asdict(TrainingArgs(train=[], output="", **CONTINUATION)) | {"train": None},
                      "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
