"""The BiLSTM-CRF of docs/model.md (the CPU firehose tier), trained on WNUT16 train, selected on dev.

    nice -n 10 python -m recipes.bilstm_crf --output runs/bilstm-crf
    nice -n 10 python -m recipes.bilstm_crf --output runs/bilstm-crf --ship tagger/bilstm_crf_model

``--ship DIR`` copies the best checkpoint (fp16 safetensors) to DIR, e.g. the directory shipped
next to tagger/default_model.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys

from tagger.backends.bilstm_crf.training import BiLstmCrfArgs, train

WNUT16 = "../shared/data/wnut16"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", action="append", default=None, help=f"default {WNUT16}/train.conll")
    p.add_argument("--dev", default=f"{WNUT16}/dev.conll")
    p.add_argument("--output", default="runs/bilstm-crf")
    p.add_argument("--epochs", type=int, default=BiLstmCrfArgs.epochs)
    p.add_argument("--seed", type=int, default=BiLstmCrfArgs.seed)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=BiLstmCrfArgs.batch_size)
    p.add_argument("--lr", type=float, default=BiLstmCrfArgs.lr)
    p.add_argument("--hidden", type=int, default=BiLstmCrfArgs.hidden)
    p.add_argument("--freeze-embeddings", action="store_true", help="keep the word2vec vectors fixed")
    p.add_argument("--subword-dim", type=int, default=0, help="static MiniLM subword embeddings at this width")
    p.add_argument("--embedding-text", action="append", default=None,
                   help="raw tweets for word2vec (default: ../shared/data/tweets/*.txt)")
    p.add_argument("--model-name", default="tweetner-wnut16-bilstm-crf")
    p.add_argument("--ship", default=None, help="copy the trained model to this directory")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    result = train(BiLstmCrfArgs(train=args.train or [f"{WNUT16}/train.conll"], dev=args.dev, output=args.output,
                                 epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                                 hidden=args.hidden, freeze_embeddings=args.freeze_embeddings,
                                 subword_dim=args.subword_dim,
                                 embedding_text=args.embedding_text, threads=args.threads,
                                 model_name=args.model_name, vectors_cache="runs/cache"))
    print(json.dumps({"output": str(result.output), "best_epoch": result.best_epoch,
                      "best_dev_f1": result.best_dev_f1, "seconds": round(result.seconds, 1)}))
    if args.ship:
        shutil.copytree(result.output, args.ship, dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
