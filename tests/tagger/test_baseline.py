"""The token-classification baseline trains and reports, on a slice of WNUT16 small enough for CI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recipes.baseline import BaselineArgs, EncodedSentence, decode, label_list, run, span_tuples
from tagger.conll import Sentence, read_conll

SUMMARY_KEYS = {"model", "best_epoch", "dev_precision", "dev_recall", "dev_f1", "train_seconds", "history"}


def _write_conll(path: Path, sentences: list[Sentence]) -> None:
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in zip(s.words, s.tags)) + "\n" for s in sentences))


@pytest.fixture
def one_thread():
    # The suite may share its cores with a training job; oversubscribed threads make this test crawl.
    before = torch.get_num_threads()
    yield 1
    torch.set_num_threads(before)


def test_labels_are_o_then_b_i_per_type() -> None:
    sentences = [Sentence(["a", "b", "c"], ["B-person", "I-person", "B-geo-loc"], "x:1")]
    assert label_list(sentences) == ["O", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]


def test_decoding_reads_first_subwords_and_repairs_stray_inside_tags() -> None:
    id2label = {0: "O", 1: "B-person", 2: "I-person", 3: "I-geo-loc"}
    # Positions: [CLS] w0 w0## w1 w2 ...; word 3 was truncated away.
    encoded = EncodedSentence([0] * 6, [-100] * 6, first_subword=[1, 3, 4, None])
    tags = decode([0, 1, 0, 2, 3, 0], encoded, id2label)
    assert tags == ["B-person", "I-person", "I-geo-loc", "O"]
    assert span_tuples(tags) == [(0, 2, "person"), (2, 3, "geo-loc")]


def test_few_steps_lower_the_loss_and_write_the_summary(tmp_path: Path, shared_data: Path, one_thread: int) -> None:
    # shared_data (conftest) is ../shared/data next to the repo, and skips the test when it is absent.
    train, _ = read_conll(shared_data / "wnut16" / "train.conll")
    _write_conll(tmp_path / "train.conll", train[:50])
    # Dev is scored only for the report's shape here; a small slice keeps the test fast.
    _write_conll(tmp_path / "dev.conll", train[50:70])
    args = BaselineArgs(
        train=str(tmp_path / "train.conll"), dev=str(tmp_path / "dev.conll"), output=str(tmp_path / "out"),
        epochs=2, batch_size=10, lr=5e-4, max_steps=8, threads=one_thread,
    )

    result = run(args)

    losses = result.losses
    assert len(losses) == 8
    # Single steps see different batches, so compare the ends of the run rather than two points.
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    summary = json.loads((tmp_path / "out" / "baseline.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["model"] == "token-classification baseline"
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert 0.0 <= summary["dev_f1"] <= 1.0
