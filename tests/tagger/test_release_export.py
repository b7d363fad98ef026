"""The shipped release: trained with dev, so its card and threshold come from its train-only twin."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.default_model import STAGE_6, export, release_args
from tagger.conll import read_conll
from tagger.evaluation import evaluate
from tagger.inference import NerTagger
from tests.fixtures.tiny_model import make_tiny_model

TWEETS = [
    (["Obama", "visits", "Paris", "today"], ["B-person", "O", "B-geo-loc", "O"]),
    (["Apple", "opens", "in", "London"], ["B-company", "O", "O", "B-geo-loc"]),
]


def _conll(path: Path) -> Path:
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\n" for words, tags in TWEETS))
    return path


def _twin(directory: Path, threshold: float | None = 0.35) -> Path:
    make_tiny_model(directory, seed=1)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["tweetner"].update({
        "entity_threshold": threshold, "threshold_sweep": [{"threshold": 0.35, "f1": 0.2}],
        "best_epoch": 1, "best_dev_f1": 0.125, "dev_file": "dev.conll",
        "history": [{"epoch": 1, "step": 3, "dev_f1": 0.125}, {"epoch": 2, "step": 6, "dev_f1": 0.1}]})
    config_path.write_text(json.dumps(config))
    return directory


def test_release_repeats_stage_6_with_dev_for_the_epochs_the_twin_selected(tmp_path: Path) -> None:
    args = release_args(_twin(tmp_path / "twin"), str(tmp_path / "release"), "stage5", resume=False)
    assert args.epochs == 1 and STAGE_6["epochs"] == 2
    assert args.dev is None and not args.tune_threshold
    assert args.train[-1].endswith("wnut16/dev.conll") and args.init_model == "stage5"
    assert (args.lr, args.head_lr, args.seed) == (STAGE_6["lr"], STAGE_6["head_lr"], STAGE_6["seed"])


@pytest.mark.parametrize("threshold", [0.35, None])
def test_export_ships_the_release_weights_with_the_twins_dev_figures(tmp_path: Path, threshold) -> None:
    twin = _twin(tmp_path / "twin", threshold)
    release = make_tiny_model(tmp_path / "release", seed=2)
    dev = _conll(tmp_path / "dev.conll")
    target = tmp_path / "shipped"

    report = export(release, twin, target, dev, [str(_conll(tmp_path / "train.conll"))] * 2)

    twin_tagger = NerTagger.load(twin, device="cpu", precision="fp32")
    twin_tagger.config.tweetner["entity_threshold"] = threshold
    expected = evaluate(twin_tagger, read_conll(dev)[0]).to_dict()
    assert {k: v for k, v in report.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    config = json.loads((target / "config.json").read_text())
    meta = config["tweetner"]
    assert config["torch_dtype"] == "float16"
    assert meta["entity_threshold"] == threshold and meta["best_dev_f1"] == 0.125 and meta["best_epoch"] == 1
    assert meta["dev_f1_recipe"] == report["f1"] and meta["dev_per_type"] == report["per_type"]
    # The weights are the release's, not the twin's.
    shipped = NerTagger.load(target, device="cpu", precision="fp32")
    released = NerTagger.load(release, device="cpu", precision="fp32")
    words = [TWEETS[0][0]]
    (_, shipped_probs), = shipped.span_probabilities(words)
    (_, released_probs), = released.span_probabilities(words)
    assert abs(shipped_probs - released_probs).max() < 1e-2
    assert meta["model_version"].startswith("wnut16-minilm-")
    card = (target / "README.md").read_text()
    assert "they have seen dev" in card and "train-only stage 6" in card
    assert ("threshold 0.35" if threshold else "argmax rule") in card

