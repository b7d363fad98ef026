"""The BiLSTM-CRF of docs/model.md (the CPU firehose tier), trained on WNUT16 train, selected on dev.

    nice -n 10 python -m recipes.bilstm_crf --output runs/bilstm-crf
    nice -n 10 python -m recipes.bilstm_crf --output runs/bilstm-crf --ship tagger/bilstm_crf_model

``--ship DIR`` copies the best checkpoint (fp16 safetensors) to DIR, e.g. the directory shipped
next to tagger/default_model.

    python -m recipes.bilstm_crf --cpu-time tagger/bilstm_crf_model

measures a model's CPU time instead of training one (docs/benchmarks.md): the first 2,000 raw
tweets through ``predict`` in batches of 256, cold (word table emptied) and hot, best of five;
CPU seconds leave out what other processes on a shared machine take.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time

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
    p.add_argument("--cpu-time", metavar="MODEL_DIR", default=None,
                   help="measure this model's CPU time per tweet (cold and hot word table) and exit")
    args = p.parse_args(argv)
    if args.cpu_time:
        print(json.dumps(cpu_time(args.cpu_time)))
        return 0
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


def cpu_time(model_dir: str, tweets: int = 2000, batch: int = 256, passes: int = 5) -> dict:
    import torch

    from tagger.bench import load_tweets
    from tagger.loading import load_tagger

    torch.set_num_threads(1)
    texts = load_tweets(None, tweets)
    tagger = load_tagger(model_dir, device="cpu")
    tagger.predict(texts[:16])
    best: dict[str, list[float]] = {"cold": [], "hot": []}
    for _ in range(passes):
        tagger._reset_cache()
        for kind in ("cold", "hot"):
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(texts), batch):
                tagger.predict(texts[i : i + batch])
            best[kind].append((time.perf_counter() - wall, time.process_time() - cpu))
    out: dict = {"model": model_dir, "tweets": len(texts), "batch_size": batch}
    for kind, runs in best.items():
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        out[kind] = {"cpu_s": round(cpu, 3), "tweets_per_cpu_second": round(len(texts) / cpu),
                     "wall_s": round(wall, 3), "tweets_per_second": round(len(texts) / wall)}
    return out


if __name__ == "__main__":
    sys.exit(main())
