"""`tweetner bench tagger`: tweets/s, tokens/s and batch latency on raw tweets, for any backend.

Every model loads through tagger.loading; several ``--model`` options compare backends on the same
tweets in one run. Timings include word splitting, encoding and decoding (a whole ``predict``).
"""
from __future__ import annotations

import glob
import json
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tagger.inference import default_device
from tagger.loading import Tagger, load_tagger, supported_precisions

SHARED_TWEETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tweets"


@dataclass
class BenchRun:
    mode: str
    tweets: int
    seconds: float
    text_tokens: int
    positions: int
    batch_latencies: list[float]
    entities: list[list[tuple]]

    @property
    def tweets_per_second(self) -> float:
        return self.tweets / self.seconds

    def summary(self) -> dict:
        lat = sorted(self.batch_latencies)
        return {
            "mode": self.mode,
            "tweets": self.tweets,
            "seconds": round(self.seconds, 3),
            "tweets_per_second": round(self.tweets_per_second, 2),
            "tokens_per_second": round(self.text_tokens / self.seconds, 1),
            "padded_positions_per_tweet": round(self.positions / max(self.tweets, 1), 1),
            "batch_latency_p50_ms": round(1000 * _quantile(lat, 0.5), 1),
            "batch_latency_p95_ms": round(1000 * _quantile(lat, 0.95), 1),
        }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if q < 1 else max(values)


def load_tweets(inputs: list[str] | None, limit: int) -> list[str]:
    paths = inputs or sorted(glob.glob(str(SHARED_TWEETS / "*.txt")))
    if not paths:
        raise FileNotFoundError("no input: pass --input FILE (raw tweets, one per line)")
    tweets: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                tweets.append(line.rstrip("\n"))
                if len(tweets) >= limit:
                    return tweets
    return tweets


def bench_one(tagger: Tagger, tweets: list[str], batch_size: int, mode: str) -> BenchRun:
    tagger.predict(tweets[: min(16, len(tweets))])  # warm-up: first-call allocations and kernel choice
    tagger.stats.__init__()
    latencies, entities = [], []
    started = time.perf_counter()
    for i in range(0, len(tweets), batch_size):
        t0 = time.perf_counter()
        found = tagger.predict(tweets[i : i + batch_size])
        if getattr(tagger.device, "type", "cpu") == "cuda":
            torch.cuda.synchronize()
        latencies.append(time.perf_counter() - t0)
        entities += [[(e.start, e.end, e.label) for e in ents] for ents in found]
    seconds = time.perf_counter() - started
    return BenchRun(mode, len(tweets), seconds, tagger.stats.text_tokens, tagger.stats.positions, latencies, entities)


def _print_run(run: BenchRun, name: str = "") -> None:
    s = run.summary()
    print(f"{name + ' ' if name else ''}{s['mode']:<20} {s['tweets_per_second']:>9.1f} tweets/s "
          f"{s['tokens_per_second']:>10.0f} tokens/s  p50 {s['batch_latency_p50_ms']:>8.1f} ms  "
          f"p95 {s['batch_latency_p95_ms']:>8.1f} ms  {s['padded_positions_per_tweet']:>7.0f} positions/tweet",
          flush=True)


def _models(args) -> list[str | None]:
    models = args.model if isinstance(args.model, list) else [args.model]
    return models or [None]


def run_bench(args) -> int:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    tweets = load_tweets(args.input, args.limit)
    device = args.device or default_device()
    print(f"tagger benchmark: {len(tweets)} tweets, batches of {args.batch_size}, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    if args.matrix:
        if len(_models(args)) > 1:
            raise ValueError("--matrix compares the modes of one model: give one --model")
        return _run_matrix(args, tweets, device, _models(args)[0])
    results = []
    for model in _models(args):
        tagger = load_tagger(model, device=device, precision=args.precision, fixed_padding=args.fixed_padding)
        padding = ("fixed" if args.fixed_padding else "dynamic") if hasattr(tagger, "fixed_padding") else "sorted"
        run = bench_one(tagger, tweets, args.batch_size, f"{tagger.precision}/{padding}")
        _print_run(run, f"{tagger.model_name} {tagger.model_version}")
        out = run.summary()
        out.update({"device": device, "precision": tagger.precision, "fixed_padding": args.fixed_padding,
                    "model": tagger.model_name, "model_version": tagger.model_version, "model_dir": model})
        results.append(out)
        del tagger
    print(json.dumps(results[0] if len(results) == 1 else {"device": device, "tweets": len(tweets),
                                                           "models": results}))
    return 0


def _run_matrix(args, tweets: list[str], device: str, model: str | None) -> int:
    """Every mode on the same tweets: the reference's fixed padding, the exact mode (fp32, dynamic
    padding, every candidate span), each precision with the span filter (tagger.span_filter), and
    for encoders that run flat (tagger.flat_encoder) the default precision in packed rows;
    ratios against fixed fp32, and entity agreement with the exact mode, in the last JSON line."""
    from tagger.inference import default_precision

    default_precision_here = default_precision(device)
    probe = load_tagger(model, device=device, precision="fp32")
    wanted = ["fp32", "bf16", "int8"] if device == "cpu" else ["fp32", "bf16", "fp16"]
    precisions = [p for p in wanted if p in supported_precisions(probe)]
    # Fixed padding is the span-marker reference's shape; only backends that pad that way have it.
    span_marker = hasattr(probe, "fixed_padding")
    filtered = span_marker and hasattr(probe, "span_filter")
    flat = getattr(probe, "flat", False)
    del probe
    # (label, precision, fixed padding, span filter)
    plan = []
    if span_marker:
        plan.append(("fp32/fixed", "fp32", True, False))
    plan.append(("fp32/dynamic", "fp32", False, False))
    if filtered:
        if "bf16" in precisions:
            plan.append(("bf16/dynamic", "bf16", False, False))
        plan += [(f"{p}/filtered", p, False, True) for p in precisions]
    else:
        plan += [(f"{p}/dynamic", p, False, None) for p in precisions if p != "fp32"]
    # Fixed padding runs at a few tweets/s on a CPU: it tags a share of each batch (its cost per
    # tweet does not depend on the batch: every pass is padded to the same shape).
    fixed_share = min(args.batch_size, max(1, args.batch_size * 300 // max(len(tweets), 1))) if device == "cpu" \
        else args.batch_size
    taggers, options = {}, {}
    for label, precision, fixed, span_filter in plan:
        kwargs = {"fixed_padding": fixed}
        if span_filter is not None and filtered:
            kwargs["span_filter"] = span_filter
        options[label] = {"precision": precision, **kwargs}
    if flat:
        # The default mode in the packed rows that came before flat batches: what those gain.
        options[f"{default_precision_here}/packed"] = {"precision": default_precision_here,
                                                      "fixed_padding": False, "span_filter": True, "flat": False}
    for label, opts in options.items():
        taggers[label] = load_tagger(model, device=device, **opts)
    # The modes take turns on each batch, so a change in the machine's load (other processes on a
    # shared CPU) falls on all of them alike and the ratios stay comparable.
    runs = {label: BenchRun(label, 0, 0.0, 0, 0, [], []) for label in taggers}
    for label, tagger in taggers.items():
        tagger.predict(tweets[: min(16, len(tweets))])  # warm-up
        tagger.stats.__init__()
    for i in range(0, len(tweets), args.batch_size):
        batch = tweets[i : i + args.batch_size]
        for label, tagger in taggers.items():
            part = batch[:fixed_share] if options[label]["fixed_padding"] else batch
            t0 = time.perf_counter()
            found = tagger.predict(part)
            if getattr(tagger.device, "type", "cpu") == "cuda":
                torch.cuda.synchronize()
            run = runs[label]
            run.batch_latencies.append(time.perf_counter() - t0)
            run.seconds += run.batch_latencies[-1]
            run.tweets += len(part)
            run.entities += [[(e.start, e.end, e.label) for e in ents] for ents in found]
    for label, run in runs.items():
        run.text_tokens, run.positions = taggers[label].stats.text_tokens, taggers[label].stats.positions
        _print_run(run)
    del taggers
    fixed_index = [i + j for i in range(0, len(tweets), args.batch_size)
                   for j in range(min(fixed_share, len(tweets) - i))]
    reference = runs["fp32/dynamic"]
    fixed_ref = runs.get("fp32/fixed", reference)
    same_fixed = [reference.entities[i] for i in fixed_index] == fixed_ref.entities if "fp32/fixed" in runs else True
    if "fp32/fixed" in runs:
        print(f"fp32 dynamic vs fixed padding: entities identical on {fixed_ref.tweets} tweets: {same_fixed}")
    default = f"{default_precision_here}/{'filtered' if filtered else 'dynamic'}"
    summary = {"device": device, "tweets": len(tweets), "threads": torch.get_num_threads(), "modes": {}}
    for mode, run in runs.items():
        s = run.summary()
        ref = [reference.entities[i] for i in fixed_index] if options[mode]["fixed_padding"] else reference.entities
        agree = sum(a == b for a, b in zip(ref, run.entities)) / run.tweets
        s["speedup_vs_fixed_fp32"] = round(run.tweets_per_second / fixed_ref.tweets_per_second, 2)
        s["tweets_with_same_entities_as_fp32"] = round(agree, 4)
        summary["modes"][mode] = s
    if args.dev:
        from tagger.conll import read_conll
        from tagger.evaluation import evaluate

        sentences, _ = read_conll(args.dev)
        for mode, opts in options.items():
            if opts["fixed_padding"]:
                continue  # the same function as fp32/dynamic (checked above), at a few tweets/s
            f1 = evaluate(load_tagger(model, device=device, **opts), sentences).scores.f1
            summary["modes"][mode]["dev_f1"] = round(f1, 4)
            print(f"dev F1 {mode}: {f1:.4f}", flush=True)
    for mode, s in summary["modes"].items():
        print(f"{mode:<20} {s['speedup_vs_fixed_fp32']:>6.2f}x fixed-fp32, same entities as fp32 on "
              f"{100 * s['tweets_with_same_entities_as_fp32']:.1f}% of tweets")
    best = max(summary["modes"].values(), key=lambda s: s["tweets_per_second"])
    summary["tweets_per_second"] = best["tweets_per_second"]
    summary["fastest_mode"] = best["mode"]
    summary["fixed_vs_dynamic_fp32_identical"] = same_fixed
    if default in summary["modes"]:
        summary["default_mode"] = default
        summary["default_vs_fixed_fp32"] = summary["modes"][default]["speedup_vs_fixed_fp32"]
    summary["exact_vs_fixed_fp32"] = summary["modes"]["fp32/dynamic"]["speedup_vs_fixed_fp32"]
    print(json.dumps(summary))
    return 0
