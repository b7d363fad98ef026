"""A README.md model card for the word-level backends' directories (span-marker has its own,
tagger.model_card), built from what the saved config carries."""
from __future__ import annotations

import json
from pathlib import Path

from tagger.conll import split_tag
from tagger.loading import architecture_of

CARD_NAME = "README.md"


def render_card(directory: str | Path) -> str:
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    meta = config.get("tweetner") or {}
    arch = architecture_of(directory)
    tags = config.get("tags") or [config["id2label"][str(i)] for i in range(len(config.get("id2label", {})))]
    types = sorted({split_tag(t)[1] for t in tags} - {""})
    lines = [f"# {meta.get('model_name', directory.name)}", "",
             f"- architecture: **{arch}** (loads with `tagger.loading.load_tagger(DIR)`, `--model DIR`)",
             f"- version: `{meta.get('model_version', 'unversioned')}`",
             f"- entity types ({len(types)}): {', '.join(types)}"]
    if "network" in config:
        net = config["network"]
        lines.append(f"- network: word {net['word_dim']}-d (word2vec-initialised), char CNN {net['char_filters']} "
                     f"filters, casing {net['case_dim']}-d, BiLSTM {net['hidden']} per direction, CRF")
    args = meta.get("training_args") or {}
    if args:
        lines.append(f"- trained on: {', '.join(args.get('train', []))}; dev: {args.get('dev') or 'none'}")
        if meta.get("train_seconds") is not None:
            lines.append(f"- training time: {meta['train_seconds'] / 60:.1f} min")
    history = meta.get("history") or []
    if history:
        lines += ["", "## Training", "", "| epoch | train loss | dev P | dev R | dev F1 |", "|---|---|---|---|---|"]
        for h in history:
            cells = [f"{h[k]:.4f}" if isinstance(h.get(k), float) else "—"
                     for k in ("dev_precision", "dev_recall", "dev_f1")]
            best = " (kept)" if h["epoch"] == meta.get("best_epoch") else ""
            lines.append(f"| {h['epoch']}{best} | {h['train_loss']:.3f} | " + " | ".join(cells) + " |")
    if args:
        lines += ["", "## Hyperparameters", "", "```json",
                  json.dumps({k: v for k, v in args.items() if k not in ("train", "dev")}, indent=1), "```"]
    lines += ["", "## Use", "", "```sh", "tweetner predict --model DIR \"Barack Obama visits Paris\"",
              "TAGGER_MODEL_DIR=DIR tweetner tagger", "```", ""]
    return "\n".join(lines)


def write_card(directory: str | Path) -> Path:
    path = Path(directory) / CARD_NAME
    path.write_text(render_card(directory), encoding="utf-8")
    return path
