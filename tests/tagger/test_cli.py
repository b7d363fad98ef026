"""`tweetner predict` and `tweetner evaluate` print the documented JSON shapes."""
from __future__ import annotations

import dataclasses
import json

import pytest

from tagger.cli import TRAIN_DEFAULTS
from tests.fixtures.tiny_model import make_tiny_model
from tagger.trainer import TrainingArgs
from tweetner.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("cli") / "model"))


def test_train_defaults_mirror_training_args():
    defaults = {f.name: f.default for f in dataclasses.fields(TrainingArgs)}
    assert {k: defaults[k] for k in TRAIN_DEFAULTS} == TRAIN_DEFAULTS


def test_predict_text_prints_one_json_object(model_dir, capsys):
    text = "Barack Obama visits Paris with @Disney #tour"
    assert main(["predict", "--model", model_dir, "--device", "cpu", "--precision", "fp32", text]) == 0
    [line] = capsys.readouterr().out.splitlines()
    obj = json.loads(line)
    assert obj["text"] == text
    for e in obj["entities"]:
        assert set(e) == {"start", "end", "text", "label", "score"}
        assert text[e["start"] : e["end"]] == e["text"]


def test_predict_file_and_pretokenized(model_dir, tmp_path, capsys):
    data = tmp_path / "in.txt"
    data.write_text("new york is big\n\nhello there world\n")
    assert main(["predict", "--model", model_dir, "--precision", "fp32", "--input", str(data),
                 "--pretokenized"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["new york is big", "", "hello there world"]
    assert rows[1]["entities"] == []
    for row in rows:
        words = row["text"].split()
        for e in row["entities"]:
            assert set(e) == {"word_start", "word_end", "text", "label", "score"}
            assert e["text"] == " ".join(words[e["word_start"] : e["word_end"]])


def test_predict_needs_exactly_one_input(model_dir, capsys):
    assert main(["predict", "--model", model_dir]) == 2


def test_evaluate_json(model_dir, tmp_path, capsys):
    data = tmp_path / "dev.conll"
    data.write_text("Barack\tB-person\nObama\tI-person\nin\tO\nParis\tB-geo-loc\n\nhello\tO\n\n")
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", model_dir, "--precision", "fp32", "--data", str(data), "--json",
                 "--report", str(report)]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"precision", "recall", "f1", "per_type", "tweets", "seconds"} <= set(obj)
    assert obj["tweets"] == 2 and isinstance(obj["precision"], float) and obj["inference_precision"] == "fp32"
    assert obj["per_type"]["person"]["support"] == 1 and obj["per_type"]["geo-loc"]["support"] == 1
    assert json.loads(report.read_text())["f1"] == obj["f1"]


def test_missing_default_model_is_a_clear_error(monkeypatch, tmp_path):
    import tagger.inference as inference

    monkeypatch.setattr(inference, "DEFAULT_MODEL_DIR", tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="--model"):
        inference.default_model_dir()


def test_bench_matrix_compares_every_mode_with_the_reference_shapes(model_dir, tmp_path, capsys):
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("".join(f"Barack Obama visits Paris number {i} with @Disney #tour\n" for i in range(12)))
    assert main(["bench", "tagger", "--matrix", "--model", model_dir, "--device", "cpu", "--input", str(tweets),
                 "--limit", "12", "--batch-size", "6"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    modes = summary["modes"]
    # The reference's shapes, the exact mode, each precision filtered, and the packed rows flat
    # batches replaced; the exact mode and the reference's shapes agree on every tweet.
    assert {"fp32/fixed", "fp32/dynamic", "fp32/filtered", "int8/filtered"} <= set(modes)
    assert any(mode.endswith("/packed") for mode in modes)
    assert summary["fixed_vs_dynamic_fp32_identical"] is True
    assert summary["default_vs_fixed_fp32"] == modes[summary["default_mode"]]["speedup_vs_fixed_fp32"]
