"""Domain-adaptive pretraining (issue 8, item 4): does SpanBERT's objective on the raw tweets pay?

1. Pretrain the encoder (the packaged MiniLM unless ``--encoder``) on the 30,000 raw tweets in
   ../shared/data/tweets with span masking and the span-boundary objective (tagger.pretraining);
   tweets that repeat a WNUT16 dev tweet are left out.
2. Fine-tune a span-marker model from the pretrained encoder and, as the control, from the
   original one, with stage 1 of the default recipe (WNUT16 train, selected on WNUT16 dev) and
   the same seed; the two dev F1 figures answer the question.

Every step is resumable (``--resume``). Not part of CI: on one CPU core about 0.5 s per
pretraining step of 32 tweets and stage 1's 10 epochs per fine-tuning run (docs/model.md); on a
GPU both take minutes.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from recipes.continuations import raw_tweets
from recipes.default_model import DATA, STAGE_1, _stage
from tagger.conll import read_conll
from tagger.corpora import TrainingText, drop_overlap
from tagger.pretraining import PretrainingArgs, pretrain
from tagger.trainer import TrainingArgs

logger = logging.getLogger(__name__)


def pretraining_tweets(limit: int | None) -> list[list[str]]:
    """The raw tweets as words, without those that repeat a WNUT16 dev tweet."""
    texts = [TrainingText(words=w, spans=[], outside=frozenset({"O"}), corpus="raw") for w in raw_tweets(limit)]
    dev, _ = read_conll(DATA / "dev.conll")
    kept, dropped = drop_overlap(texts, dev)
    if dropped:
        logger.warning("%d raw tweets repeat a WNUT16 dev tweet: left out", dropped)
    return [t.words for t in kept]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=None, help="encoder to adapt (default: the packaged MiniLM)")
    parser.add_argument("--output", default="runs/dapt")
    parser.add_argument("--steps", type=int, default=2000, help="pretraining steps of --batch-size tweets")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many raw tweets")
    parser.add_argument("--finetune-epochs", type=int, default=STAGE_1["epochs"])
    parser.add_argument("--runs", nargs="+", choices=("pretrain", "adapted", "control"),
                        default=["pretrain", "adapted", "control"],
                        help="which steps (default all; the control needs no pretraining and may run beside it)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output)
    adapted = out / "encoder"
    if "pretrain" in args.runs and not (args.resume and (adapted / "config.json").is_file()):
        texts = pretraining_tweets(args.limit)
        logger.info("pretraining on %d raw tweets", len(texts))
        pretrain(PretrainingArgs(texts=texts, output=str(out), encoder=args.encoder, steps=args.steps,
                                 batch_size=args.batch_size, lr=args.lr,
                                 resume=args.resume and (out / "resume" / "state.pt").is_file()))
    results = {}
    stage = STAGE_1 | {"epochs": args.finetune_epochs}
    for name, encoder in (("adapted", str(adapted)), ("control", args.encoder)):
        if name not in args.runs:
            continue
        run = out / f"finetune-{name}"
        _stage(TrainingArgs(train=[str(DATA / "train.conll")], dev=str(DATA / "dev.conll"), output=str(run),
                            encoder=encoder, resume=args.resume, **stage))
        tuned = json.loads((run / "config.json").read_text())["tweetner"]
        results[name] = {k: tuned.get(k) for k in ("best_epoch", "best_dev_f1", "entity_threshold")}
        results[name]["threshold_dev_f1"] = max((r["f1"] for r in tuned.get("threshold_sweep", [])), default=None)
    print(json.dumps({"encoder": str(adapted), "steps": args.steps, "finetune": stage, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
