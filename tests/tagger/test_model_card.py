"""The model card: sections, examples and per-epoch rows from config metadata, and no crash without it."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tagger.configuration import SpanMarkerConfig
from tagger.conll import Sentence
from tagger.model_card import render_model_card, write_model_card
from tests.fixtures.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def bare_config() -> SpanMarkerConfig:
    model, _ = build_tiny_model(labels=("person", "geo-loc"))
    return model.config


@pytest.fixture
def config(bare_config: SpanMarkerConfig) -> SpanMarkerConfig:
    config = copy.deepcopy(bare_config)
    config.tweetner.update({
        "model_name": "tweetner-test",
        "training": {"train": ["data/train.conll"], "output": "out", "epochs": 3, "lr": 1e-4, "batch_size": 16},
        "history": [
            {"epoch": 1, "step": 10, "train_loss": 0.91234, "dev_precision": 0.5, "dev_recall": 0.4,
             "dev_f1": 0.4444, "seconds": 12.34},
            {"epoch": 2, "step": 20, "train_loss": 0.41, "dev_precision": 0.7, "dev_recall": 0.6,
             "dev_f1": 0.6462, "seconds": 11.0},
            {"epoch": 3, "step": 30, "train_loss": 0.2, "dev_precision": 0.65, "dev_recall": 0.6,
             "dev_f1": 0.624, "seconds": 11.5},
        ],
        "best_epoch": 2,
        "best_dev_f1": 0.6462,
        "train_seconds": 40.2,
        "train_files": ["/data/wnut17/train.conll"],
        "dev_file": "/data/wnut17/dev.conll",
    })
    return config


def sentences() -> list[Sentence]:
    raw = [
        ("@amy flew to New York with Bob", "O O O B-geo-loc I-geo-loc O B-person"),
        ("Bob loves New York", "B-person O B-geo-loc I-geo-loc"),
        ("Paris or New York ?", "B-geo-loc O B-geo-loc I-geo-loc O"),
        ("Bob and Alice Smith met Carol in Rome", "B-person O B-person I-person O B-person O B-geo-loc"),
        ("nothing to see here", "O O O O"),
    ]
    return [Sentence(words.split(), tags.split(), f"hand:{i}") for i, (words, tags) in enumerate(raw)]


def front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def test_card_has_all_sections(config: SpanMarkerConfig) -> None:
    card = render_model_card(config, sentences(), directory="models/wnut")
    for title in ("Labels", "Training set metrics", "Hyperparameters", "Training results",
                  "Framework versions", "How to use", "Limitations"):
        assert f"\n## {title}\n" in card
    assert card.startswith("---\n") and "\n# tweetner-test\n" in card
    assert "tiny-random-bert" in card and "2 layers" in card and "hidden size 32" in card
    assert 'tweetner predict --model models/wnut "' in card
    assert 'NerTagger.load("models/wnut")' in card
    assert "## Per-type dev F1" not in card and "## Throughput" not in card


def test_front_matter(config: SpanMarkerConfig) -> None:
    meta = front_matter(render_model_card(config, sentences()))
    assert meta["library_name"] == "span-marker"
    assert {"token-classification", "ner", "named-entity-recognition", "span-marker"} <= set(meta["tags"])
    assert meta["datasets"] == ["train.conll", "dev.conll"]
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"f1": 0.6462, "precision": 0.7, "recall": 0.6}


def test_labels_show_most_frequent_examples(config: SpanMarkerConfig) -> None:
    card = render_model_card(config, sentences())
    assert '| `geo-loc` | 5 | "New York", "Paris", "Rome" |' in card
    # Five person mentions, three distinct forms: the most frequent first, then first-seen order.
    assert '| `person` | 5 | "Bob", "Alice Smith", "Carol" |' in card


def test_training_set_metrics(config: SpanMarkerConfig) -> None:
    card = render_model_card(config, sentences())
    assert "5 sentences, 10 entities." in card
    assert "| Sentence length (words) | 4 | 5 | 8 |" in card
    assert "| Entities per sentence | 0 | 2 | 4 |" in card
    assert "| Entity length (words) | 1 | 1 | 2 |" in card


def test_training_results_rows_and_bold_best(config: SpanMarkerConfig) -> None:
    card = render_model_card(config, sentences())
    assert "| 1 | 10 | 0.9123 | 0.5000 | 0.4000 | 0.4444 | 12.3 |" in card
    assert "| **2** | **20** | **0.4100** | **0.7000** | **0.6000** | **0.6462** | **11.0** |" in card
    assert "| 3 | 30 | 0.2000 | 0.6500 | 0.6000 | 0.6240 | 11.5 |" in card
    assert "epoch 2 (dev F1 0.6462)" in card


def test_hyperparameters(config: SpanMarkerConfig) -> None:
    card = render_model_card(config, sentences())
    section = card.split("## Hyperparameters\n")[1].split("\n## ")[0]
    assert "- entity_max_length: 8" in section and "- model_max_length: 256" in section
    assert "- epochs: 3" in section and "- lr: 0.0001" in section
    assert "data/train.conll" not in section and "output" not in section


def test_optional_sections_and_extras(config: SpanMarkerConfig) -> None:
    config.tweetner["dev_per_type"] = {
        "person": {"precision": 0.8, "recall": 0.7, "f1": 0.7467, "support": 40},
        "geo-loc": {"precision": 0.6, "recall": 0.5, "f1": 0.5455, "support": 20},
    }
    config.tweetner["throughput"] = {"device": "cpu", "tweets": 100, "modes": {
        "fp32/dynamic": {"tweets": 100, "tweets_per_second": 250.5},
        "bf16/dynamic": {"tweets": 100, "tweets_per_second": 400.0},
    }}
    card = render_model_card(config, sentences(), extra_sections={"Citation": "Cite us."})
    per_type = card.split("## Per-type dev F1\n")[1]
    # Rows follow the config's label order, not the dict's.
    assert per_type.index("`person`") < per_type.index("`geo-loc`")
    assert "| `geo-loc` | 0.6000 | 0.5000 | 0.5455 | 20 |" in card
    assert "| mode | tweets | tweets_per_second |" in card and "| bf16/dynamic | 100 | 400 |" in card
    assert card.rstrip().endswith("## Citation\n\nCite us.")


def test_throughput_as_list(config: SpanMarkerConfig) -> None:
    config.tweetner["throughput"] = [{"mode": "fp32/dynamic", "tweets_per_second": 12.5}]
    assert "| fp32/dynamic | 12.5 |" in render_model_card(config)


def test_empty_metadata_renders(bare_config: SpanMarkerConfig) -> None:
    config = copy.deepcopy(bare_config)
    config.tweetner = {}
    card = render_model_card(config)
    assert "## Labels" in card and "`person`" in card and "## How to use" in card
    assert "## Training results" not in card and "## Training set metrics" not in card
    assert "model-index" not in front_matter(card)


def test_malformed_metadata_renders(bare_config: SpanMarkerConfig) -> None:
    # A checkpoint edited by hand or by another tool: wrong types must not raise.
    config = copy.deepcopy(bare_config)
    config.tweetner = {"history": [{"epoch": 1}, "junk"], "training": None, "best_dev_f1": "n/a",
                       "dev_per_type": [], "throughput": "fast"}
    card = render_model_card(config, [Sentence([], [], "empty:1")])
    assert "| 1 | — | — | — | — | — | — |" in card


def test_write_model_card(tmp_path: Path, config: SpanMarkerConfig) -> None:
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    path = write_model_card(tmp_path, config, sentences())
    assert path == tmp_path / "README.md"
    text = path.read_text(encoding="utf-8")
    assert f"NerTagger.load(\"{tmp_path}\")" in text
    assert "The encoder is uncased" in text


def test_shell_example_quotes_the_directory(config: SpanMarkerConfig) -> None:
    card = render_model_card(config, directory="my models/wnut")
    assert "tweetner predict --model 'my models/wnut' " in card
    assert 'NerTagger.load("my models/wnut")' in card
