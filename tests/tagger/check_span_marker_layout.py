"""Manual check (not a test): a real encoder's exact mode against span_marker's reference layout.

    HF_HUB_OFFLINE=1 .venv/bin/python -m tests.tagger.check_span_marker_layout \
        ENCODER_DIR ../shared/data/wnut16/dev.conll OUT_DIR 300 [--int8]

Builds a span_marker-format checkpoint with our own save path (tweetner train's defaults: 256 /
128 / 8, a random head with a fixed seed) in OUT_DIR, then on the first N sentences compares span
probabilities and entities of the exact mode (fp32, the encoder's own layout) and of the compact
layout used before issue 16 with ``span_marker_reference``, and times both. One JSON line per run.
docs/benchmarks.md has the figures for all-mpnet-base-v2.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tagger.collator import SpanMarkerCollator
from tagger.conll import labels_in, read_conll
from tagger.inference import NerTagger, PredictStats
from tagger.modeling import SpanMarkerModel
from tests.tagger.span_marker_reference import ReferenceSpanMarker


def main(argv: list[str]) -> None:
    encoder, dev, checkpoint, limit = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    torch.manual_seed(16)
    sentences, _ = read_conll(dev)
    labels = ["O", *labels_in(sentences)]
    words = [s.words for s in sentences[:limit]]
    model, tokenizer = SpanMarkerModel.from_encoder(encoder, labels)
    torch.nn.init.normal_(model.classifier.weight, std=0.2)  # a random head strong enough to tag spans
    with torch.no_grad():
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 3.0
    model.save_pretrained(checkpoint, tokenizer)

    reference = ReferenceSpanMarker(checkpoint)
    started = time.perf_counter()
    expected = reference.span_probabilities(words)
    print(json.dumps({"candidate_spans": sum(len(s) for s, _ in expected),
                      "reference_seconds": round(time.perf_counter() - started, 2),
                      "entities_in_reference": sum(len(reference.entities(s, p)) for s, p in expected)}), flush=True)

    exact = NerTagger.load(checkpoint, device="cpu", precision="fp32")
    compact = NerTagger.load(checkpoint, device="cpu", precision="fp32")
    compact.collator = SpanMarkerCollator(tokenizer.pad_token_id, tokenizer.start_marker_id, tokenizer.end_marker_id)
    t_exact = _compare(exact, "fp32 exact (encoder's layout)", words, reference, expected)
    t_compact = _compare(compact, "fp32 compact layout (before issue 16)", words, reference, expected)
    print(json.dumps({"exact_over_compact_time_ratio": round(t_exact / t_compact, 2)}), flush=True)
    if "--int8" in argv:
        _compare(NerTagger.load(checkpoint, device="cpu", precision="int8"), "int8", words, reference, expected)


def _compare(tagger: NerTagger, name: str, words, reference: ReferenceSpanMarker, expected) -> float:
    tagger.span_probabilities(words[:2])  # warm-up
    tagger.stats = PredictStats()
    started = time.perf_counter()
    got = tagger.span_probabilities(words)
    seconds = time.perf_counter() - started
    same, max_diff, top_label_diffs = 0, 0.0, 0
    for (spans, probs), (ref_spans, ref_probs) in zip(got, expected):
        assert [tuple(s) for s in spans.tolist()] == ref_spans
        max_diff = max(max_diff, float(np.abs(probs - ref_probs).max(initial=0)))
        top_label_diffs += int((probs.argmax(-1) != ref_probs.argmax(-1)).sum())
        same += reference.entities(ref_spans, probs) == reference.entities(ref_spans, ref_probs)
    print(json.dumps({"mode": name, "identical_tweets": same, "tweets": len(words), "max_prob_diff": max_diff,
                      "top_label_diffs": top_label_diffs, "seconds": round(seconds, 2),
                      "positions": tagger.stats.positions, "passes": tagger.stats.passes}), flush=True)
    return seconds


if __name__ == "__main__":
    main(sys.argv[1:])
