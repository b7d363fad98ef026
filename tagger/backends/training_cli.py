"""`tweetner train --arch token-classification|bilstm-crf`: the command's options onto each
trainer's arguments. An option left at its span-marker default takes the architecture's own
default (a BiLSTM-CRF wants 40 epochs at lr 2e-3, not 10 at 1e-4)."""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

class TrainingOptionError(ValueError):
    """An option the chosen architecture cannot honour; one line saying which and why."""


# Options both word-level trainers understand, by their argparse names.
_SHARED = ("epochs", "batch_size", "lr", "weight_decay", "patience", "seed", "max_steps")


def _given(args, defaults: dict[str, Any], names: tuple[str, ...], target: type) -> dict[str, Any]:
    accepted = {f.name for f in fields(target)}
    return {n: getattr(args, n) for n in names
            if n in accepted and getattr(args, n, None) is not None and getattr(args, n) != defaults.get(n)}


def train_word_tagger(args, span_marker_defaults: dict[str, Any]) -> dict[str, Any]:
    """Trains ``args.arch`` and returns the summary `tweetner train` prints."""
    common = {"train": args.train, "dev": args.dev, "output": args.output, "save_dtype": args.save_dtype,
              "model_name": args.model_name, "model_version": args.model_version}
    if getattr(args, "resume", False):
        raise TrainingOptionError("--resume is a span-marker option; the word-level trainers rerun from scratch "
                         "(a BiLSTM-CRF trains in minutes)")
    if args.arch == "bilstm-crf":
        from tagger.backends.bilstm_crf.training import BiLstmCrfArgs, train

        extra = _given(args, span_marker_defaults, (*_SHARED, "dropout"), BiLstmCrfArgs)
        targs = BiLstmCrfArgs(**common, embedding_text=args.embedding_text, **extra)
    elif args.arch == "token-classification":
        from tagger.backends.token_classification_training import TokenClassificationArgs, train

        extra = _given(args, span_marker_defaults, (*_SHARED, "warmup_ratio"), TokenClassificationArgs)
        if args.model_max_length != span_marker_defaults.get("model_max_length"):
            extra["max_length"] = args.model_max_length
        targs = TokenClassificationArgs(**common, encoder=args.encoder, device=args.device, **extra)
    else:
        raise TrainingOptionError(f"unknown architecture {args.arch!r}")
    result = train(targs)
    history = [h if isinstance(h, dict) else asdict(h) for h in result.history]
    return {"arch": args.arch, "output": str(result.output), "best_epoch": result.best_epoch,
            "best_dev_f1": result.best_dev_f1, "seconds": round(result.seconds, 1), "history": history}
