"""`tweetner predict | evaluate | train` and `tweetner bench tagger`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tagger.configuration import PRECISIONS


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="tag raw tweets (or pre-split words) and print JSON lines")
    _model_options(p)
    p.add_argument("text", nargs="?", help="one text to tag (or use --input)")
    p.add_argument("--input", help="file with one text per line ('-' for stdin)")
    p.add_argument("--pretokenized", action="store_true",
                   help="lines are space-separated words; entities carry word_start/word_end")
    p.add_argument("--batch-size", type=int, default=256, help="lines per model call")
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="entity-level P/R/F1 on a CoNLL file")
    # Evaluation measures the model itself, so it runs the exact mode unless asked otherwise.
    _model_options(p, default_precision="fp32")
    p.add_argument("--data", required=True, help="CoNLL file (token TAB-or-space tag)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", help="also write the JSON report to this file")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("train", help="fine-tune a span-marker model from a local encoder")
    p.add_argument("--encoder", default=None, help="local Hugging Face encoder directory (default: packaged MiniLM)")
    p.add_argument("--train", required=True, action="append", metavar="FILE[:MAP.json]",
                   help="CoNLL training file, with an optional label map (repeatable; see docs/model.md)")
    p.add_argument("--dev", help="CoNLL dev file: evaluated each epoch, best epoch kept")
    p.add_argument("--init-model", default=None,
                   help="continue training this span-marker model instead of starting from --encoder")
    p.add_argument("--output", required=True, help="directory for the trained model")
    # Mirrors tagger.trainer.TrainingArgs (a test checks they agree) without importing torch here.
    for name, value in TRAIN_DEFAULTS.items():
        kind = int if name in {"epochs", "batch_size", "grad_accum", "entity_max_length", "marker_max_length",
                               "model_max_length", "patience", "seed", "max_steps"} else float
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=value, help=f"default {value}")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="training precision: bf16/fp16 use autocast (default fp32)")
    p.add_argument("--save-dtype", default="float32", choices=("float32", "float16"))
    p.add_argument("--model-name", default=None)
    p.add_argument("--model-version", default=None, help="default: digest of the saved weights")
    p.add_argument("--word-shape-dim", type=int, default=0,
                   help="embed the boundary words' shapes (case, @, #, URL) at this width; 0 = off")
    p.add_argument("--strip-hashtags", action="store_true", help="the encoder reads #Apple as Apple")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last epoch")
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="end this invocation after N epochs (continue later with --resume)")
    p.add_argument("--arch", default="span-marker", choices=("span-marker", "token-classification", "bilstm-crf"),
                   help="span-marker (default), token-classification (a Hugging Face BIO head on --encoder) or "
                   "bilstm-crf (the CPU firehose tier); options left at their defaults take each architecture's "
                   "own (docs/model.md)")
    p.add_argument("--embedding-text", action="append", default=None, metavar="FILE",
                   help="bilstm-crf: raw tweets for word2vec (repeatable; default ../shared/data/tweets/*.txt)")
    p.set_defaults(func=_train)


TRAIN_DEFAULTS = {
    "epochs": 10, "batch_size": 16, "grad_accum": 1, "lr": 1e-4, "head_lr": 1e-3, "layer_decay": 1.0,
    "warmup_ratio": 0.1, "weight_decay": 0.01, "dropout": 0.1, "label_smoothing": 0.0, "negative_rate": 1.0,
    "outside_weight": 1.0, "class_weight_power": 0.0, "focal_gamma": 0.0, "entity_max_length": 8, "marker_max_length": 128, "model_max_length": 256,
    "patience": 3, "seed": 42, "max_steps": None,
}


def add_bench_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tagger", help="tagger throughput and latency on raw tweets")
    _model_options(p, many=True)
    p.add_argument("--input", action="append", help="raw tweets, one per line (repeatable; default: "
                   "../shared/data/tweets/*.txt)")
    p.add_argument("--limit", type=int, default=2000, help="tweets to tag (default 2000)")
    p.add_argument("--fixed-padding", action="store_true", help="pad like the reference library")
    p.add_argument("--batch-size", type=int, default=256, help="tweets per model call (a micro-batch)")
    p.add_argument("--matrix", action="store_true",
                   help="run every precision, dynamic and fixed padding, and compare entities to fp32")
    p.add_argument("--dev", help="with --matrix: also report dev F1 per mode on this CoNLL file")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's, one per core; 1 is faster on a shared CPU)")
    p.set_defaults(func=_bench)


def _model_options(p: argparse.ArgumentParser, default_precision: str | None = None, many: bool = False) -> None:
    p.add_argument("--model", default=None, action="append" if many else "store",
                   help="model directory: span-marker, Hugging Face token classification or BiLSTM-CRF, read "
                   "from its config (default: the shipped model)" + ("; repeat to compare models" if many else ""))
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--precision", default=default_precision, choices=PRECISIONS,
                   help=f"default: {default_precision}" if default_precision else
                   "default: fp16 on GPU, bf16 on CPUs with avx512_bf16, else fp32")


class UsageProblem(Exception):
    """A problem with the command's inputs; the message is one line with the fix."""


def _check_model(model: str | None) -> None:
    if model is not None and not (Path(model) / "config.json").is_file():
        raise UsageProblem(f"{model} is not a model directory (no config.json); give --model a "
                           "directory written by `tweetner train` or a Hugging Face token-classification "
                           "checkpoint, or leave --model out for the shipped model")


def _check_file(path: str, option: str) -> None:
    if not Path(path).is_file():
        why = "is a directory" if Path(path).is_dir() else "does not exist"
        raise UsageProblem(f"{option} {path} {why}; give the path of a file")


def _load(args, **kwargs):
    from tagger.loading import ModelDirectoryError, load_tagger

    _check_model(args.model)
    try:
        return load_tagger(args.model, device=args.device, precision=args.precision, **kwargs)
    except ModelDirectoryError as exc:
        raise UsageProblem(str(exc)) from None


def _reported(handler):
    """Runs a handler; a UsageProblem becomes one line on stderr and exit code 2."""
    def run(args) -> int:
        try:
            return handler(args)
        except UsageProblem as exc:
            print(f"tweetner {args.command}: {exc}", file=sys.stderr)
            return 2
    run.__name__ = handler.__name__
    return run


def _progress(total: int | None, unit: str):
    """A progress bar on stderr when it is a terminal (none when piped or in logs)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=None, leave=False)


@_reported
def _predict(args) -> int:
    if (args.text is None) == (args.input is None):
        raise UsageProblem("give either TEXT or --input FILE")
    if args.input not in (None, "-"):
        _check_file(args.input, "--input")
    tagger = _load(args)
    if args.text is not None:
        lines = [args.text]
        source = iter(lines)
    else:
        fh = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", errors="replace")
        source = (line.rstrip("\n") for line in fh)
    batch: list[str] = []
    bar = _progress(None, " lines") if args.input is not None else None

    def flush() -> None:
        if args.pretokenized:
            sentences = [line.split() for line in batch]
            found = tagger.predict_words(sentences)
        else:
            found = tagger.predict(batch)
        for line, entities in zip(batch, found):
            print(json.dumps({"text": line, "entities": [e.to_dict() for e in entities]}, ensure_ascii=False))
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    for line in source:
        batch.append(line)
        if len(batch) >= args.batch_size:
            flush()
    if batch:
        flush()
    if bar is not None:
        bar.close()
    return 0


# Skipped lines shown one by one before the rest are only counted.
_PROBLEMS_SHOWN = 5


def _read_evaluation_data(path: str) -> list:
    """The file's sentences, refusing a file that holds none (it is not CoNLL)."""
    from tagger.conll import read_conll

    _check_file(path, "--data")
    sentences, problems = read_conll(path)
    for problem in problems[:_PROBLEMS_SHOWN]:
        print(f"warning: skipped {problem}", file=sys.stderr)
    if len(problems) > _PROBLEMS_SHOWN:
        print(f"warning: skipped {len(problems) - _PROBLEMS_SHOWN} more lines", file=sys.stderr)
    if not sentences:
        raise UsageProblem(f"{path} holds no CoNLL sentences ({len(problems)} lines skipped); "
                           "give a file of 'token<TAB>tag' lines (IOB2, IOB1 or BIOES tags) "
                           "with a blank line between tweets")
    return sentences


def _warn_unknown_labels(sentences: list, model_labels: list[str]) -> None:
    from tagger.conll import labels_in

    unknown = sorted(set(labels_in(sentences)) - set(model_labels))
    if unknown:
        print(f"warning: the model cannot produce {', '.join(unknown)} (its labels: "
              f"{', '.join(model_labels)}); those gold entities all count as misses",
              file=sys.stderr)


@_reported
def _evaluate(args) -> int:
    from tagger.evaluation import evaluate

    sentences = _read_evaluation_data(args.data)
    tagger = _load(args)
    _warn_unknown_labels(sentences, tagger.labels)
    bar = _progress(len(sentences), " tweets")
    result = evaluate(tagger, sentences, progress=bar.update)
    bar.close()
    report = result.to_dict()
    report.update({"model": tagger.model_name, "model_version": tagger.model_version,
                   "inference_precision": tagger.precision, "device": str(tagger.device), "data": args.data})
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    s = result.scores
    print(f"{args.data}: {result.sentences} tweets in {result.seconds:.1f}s ({tagger.precision} on {tagger.device})")
    print(f"{'type':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for label, t in sorted(s.per_type.items()):
        print(f"{label:<14}{t.precision:>10.4f}{t.recall:>10.4f}{t.f1:>10.4f}{t.support:>9}")
    print(f"{'overall':<14}{s.precision:>10.4f}{s.recall:>10.4f}{s.f1:>10.4f}{s.gold:>9}")
    return 0


@_reported
def _train(args) -> int:
    from tagger.trainer import TrainingArgs, train

    from tagger.corpora import parse_spec

    for spec in args.train:
        path, label_map = parse_spec(spec)
        _check_file(path, "--train")
        if label_map:
            _check_file(label_map, "--train label map")
    if args.dev:
        _check_file(args.dev, "--dev")
    if args.init_model:
        _check_model(args.init_model)
    if args.arch != "span-marker":
        from tagger.backends.training_cli import TrainingOptionError, train_word_tagger
        from tagger.corpora import CorpusError

        try:
            print(json.dumps(train_word_tagger(args, TRAIN_DEFAULTS)))
        except (TrainingOptionError, CorpusError) as exc:
            raise UsageProblem(str(exc)) from None
        return 0

    targs = TrainingArgs(
        train=args.train, dev=args.dev, output=args.output, encoder=args.encoder, device=args.device,
        init_model=args.init_model,
        precision=args.precision, save_dtype=args.save_dtype, model_name=args.model_name,
        model_version=args.model_version, word_shape_dim=args.word_shape_dim, strip_hashtags=args.strip_hashtags,
        resume=args.resume, stop_after_epochs=args.stop_after_epochs,
        **{k: getattr(args, k) for k in TRAIN_DEFAULTS},
    )
    result = train(targs)
    print(json.dumps({
        "output": str(result.output), "best_epoch": result.best_epoch, "best_dev_f1": result.best_dev_f1,
        "seconds": round(result.seconds, 1), "finished": result.finished,
        "history": [h.__dict__ for h in result.history],
    }))
    return 0


@_reported
def _bench(args) -> int:
    from tagger.bench import run_bench

    for model in args.model or [None]:
        _check_model(model)
    return run_bench(args)
