"""Reproduce the shipped default model with one command: `make train-default`.

Trains on WNUT16 train in two seeded stages, selecting epochs on WNUT16 dev, then exports the best epoch as fp16 safetensors into tagger/default_model with its tokenizer
files and a model card that carries the per-type dev scores. Takes about 100 minutes on 2 CPU
cores; see docs/model.md for the experiments behind these settings.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from tagger.calibration import best_threshold, sweep_thresholds

from tagger.conll import read_conll
from tagger.evaluation import evaluate
from tagger.inference import DEFAULT_MODEL_DIR, NerTagger
from tagger.model_card import write_model_card
from tagger.modeling import SpanMarkerModel
from tagger.trainer import TrainingArgs, load_sentences, train

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wnut16"

# The settings of the shipped model (docs/model.md): a first stage from the encoder, then a second
# stage that continues from the first one's best epoch at half the learning rate, because dev F1
# was still rising when the first stage's schedule ran out.
MODEL_NAME = "tweetner-wnut16-minilm"
STAGE_1 = dict(epochs=10, batch_size=16, lr=1e-4, head_lr=1e-3, entity_max_length=6, negative_rate=0.25,
               patience=3, seed=42)
STAGE_2 = dict(epochs=5, batch_size=16, lr=5e-5, head_lr=5e-4, warmup_ratio=0.0, entity_max_length=6,
               negative_rate=0.25, patience=5, seed=43)


def export(trained_dir: Path, target: Path, dev_file: Path, train_files: list[str],
           throughput: dict | None = None) -> dict:
    """Write the fp16 shipping copy and its card; returns the dev report of the shipped weights."""
    model, tokenizer = SpanMarkerModel.from_pretrained(trained_dir)
    sentences, _ = read_conll(dev_file)
    if "threshold_sweep" not in model.config.tweetner:
        sweep = sweep_thresholds(NerTagger(model, tokenizer, device="cpu", precision="fp32"), sentences)
        model.config.tweetner["entity_threshold"] = best_threshold(sweep).threshold
        model.config.tweetner["threshold_sweep"] = [asdict(r) for r in sweep]
    if target.exists():
        shutil.rmtree(target)
    model.config.tweetner["model_name"] = MODEL_NAME
    # The training machine's site-packages path means nothing to users; name the encoder instead.
    model.config.encoder["_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"
    model.config.tweetner["datasets"] = ["WNUT 2016 Twitter NER (train, dev)"]
    if throughput:
        model.config.tweetner["throughput"] = throughput
    # A readable version that still changes with the weights: the trainer's digest of them.
    model.config.tweetner["model_version"] = f"wnut16-minilm-{model.config.model_version}"
    model.save_pretrained(target, tokenizer, dtype=torch.float16)
    # The card reports what users get: the fp16 weights loaded back in fp32 on the CPU.
    shipped = NerTagger.load(target, device="cpu", precision="fp32")
    report = evaluate(shipped, sentences).to_dict()
    config = shipped.config
    config.tweetner["dev_per_type"] = report["per_type"]
    config.tweetner["dev_f1_shipped"] = report["f1"]
    config.save(target)
    card = write_model_card(target, config, load_sentences(train_files))
    # The shipped model is the default: its card shows the commands without a path.
    text = card.read_text().replace(f" --model {target}", "").replace(f'NerTagger.load("{target}")', "NerTagger.load()")
    card.write_text(text)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="runs/default", help="training output (not shipped)")
    parser.add_argument("--target", default=str(DEFAULT_MODEL_DIR), help="where the shipped copy goes")
    parser.add_argument("--export-only", action="store_true", help="skip training; export --output")
    parser.add_argument("--throughput", help="the last JSON line of `tweetner bench tagger --matrix`, "
                        "for the model card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train_files = [str(DATA / "train.conll")]
    dev_file = DATA / "dev.conll"
    if not args.export_only:
        stage_1 = f"{args.output}-stage1"
        train(TrainingArgs(train=train_files, dev=str(dev_file), output=stage_1, model_name=MODEL_NAME, **STAGE_1))
        train(TrainingArgs(train=train_files, dev=str(dev_file), output=args.output, init_model=stage_1,
                           model_name=MODEL_NAME, **STAGE_2))
    throughput = None
    if args.throughput:
        lines = [ln for ln in Path(args.throughput).read_text().splitlines() if ln.startswith("{")]
        throughput = json.loads(lines[-1])
    report = export(Path(args.output), Path(args.target), dev_file, train_files, throughput)
    print(json.dumps({"target": args.target, "dev_f1": report["f1"], "precision": report["precision"],
                      "recall": report["recall"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
