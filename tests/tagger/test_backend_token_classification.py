"""Hugging Face token classification behind the one tagger interface: a tiny BERT saved by
transformers loads by directory, tags raw tweets with offsets on the raw text, and scores what
transformers' own token-classification pipeline scores."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tagger.conll import Sentence, spans_from_iob2
from tagger.evaluation import evaluate
from tagger.loading import ModelDirectoryError, architecture_of, load_tagger
from tagger.metrics import score_entities
from tagger.words import split_words
from tests.fixtures.tiny_backends import RAW_TWEETS, make_tiny_token_classifier, write_tiny_corpus

BIOES_TAGS = ("O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC")

# Plain words (no inner punctuation), so transformers' pipeline sees the same words we do.
WORDS = ("taylor swift sang in london tonight with barack obama and friends from paris "
         "apple google store new york city music love today").split()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_token_classifier(tmp_path_factory.mktemp("tc") / "model")


def _sentences(n: int = 40) -> list[Sentence]:
    import random

    rng = random.Random(3)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 14))]
        tags = ["B-person" if w in ("taylor", "barack") else "I-person" if w in ("swift", "obama") else
                "B-geo-loc" if w in ("london", "paris") else "O" for w in words]
        out.append(Sentence(words, tags, f"gen:{i}"))
    return out


def test_saved_checkpoint_loads_by_directory(model_dir: Path) -> None:
    assert architecture_of(model_dir) == "token-classification"
    tagger = load_tagger(model_dir, device="cpu", precision="fp32")
    assert tagger.labels == ["company", "geo-loc", "person"]
    assert tagger.model_name == "model" and tagger.model_version.startswith("tc-")
    again = load_tagger(model_dir, device="cpu", precision="fp32")
    assert again.model_version == tagger.model_version


def test_offsets_slice_the_raw_tweet(model_dir: Path) -> None:
    tagger = load_tagger(model_dir, device="cpu", precision="fp32")
    found = tagger.predict(RAW_TWEETS[:4])
    assert sum(map(len, found)) > 0, "the random tiny model tagged nothing"
    for text, entities in zip(RAW_TWEETS, found):
        bounds = {w.start for w in split_words(text)}, {w.end for w in split_words(text)}
        for e in entities:
            assert text[e.start:e.end] == e.text
            assert e.start in bounds[0] and e.end in bounds[1]  # whole words of the raw tweet
            assert 0.0 <= e.score <= 1.0
    # emoji, the URL and the @mention are words of their own: an entity on them is exactly them
    texts = {e.text for entities in found for e in entities}
    for odd in ("😀", "https://t.co/abc", "@bob"):
        assert not any(odd in t and t != odd and " " not in t for t in texts)


def test_evaluate_equals_transformers_pipeline_plus_our_metric(model_dir: Path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    sentences = _sentences()
    ours = evaluate(load_tagger(model_dir, device="cpu", precision="fp32"), sentences)
    hf = pipeline("token-classification",
                  model=AutoModelForTokenClassification.from_pretrained(str(model_dir), local_files_only=True),
                  tokenizer=AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True),
                  aggregation_strategy="first", device="cpu")
    predicted = []
    for s in sentences:
        starts = {}
        offset = 0
        for i, w in enumerate(s.words):
            starts[offset] = i
            offset += len(w) + 1
        groups = hf([s.words], is_split_into_words=True)[0]
        predicted.append({(starts[g["start"]], _word_end(s.words, g["end"]), g["entity_group"]) for g in groups})
    gold = [{(x.start, x.end, x.label) for x in spans_from_iob2(s.tags)} for s in sentences]
    theirs = score_entities(gold, predicted)
    assert ours.scores.predicted > 0, "the random model predicted nothing: the comparison would be empty"
    assert (ours.scores.true_positives, ours.scores.predicted, ours.scores.gold) == \
        (theirs.true_positives, theirs.predicted, theirs.gold)
    assert ours.scores.f1 == theirs.f1


def _word_end(words: list[str], end_char: int) -> int:
    offset = 0
    for i, w in enumerate(words):
        offset += len(w)
        if offset == end_char:
            return i + 1
        offset += 1
    raise AssertionError(f"{end_char} is no word end")


def test_bioes_labels_and_a_label_map(tmp_path: Path) -> None:
    directory = make_tiny_token_classifier(tmp_path / "bioes", BIOES_TAGS, seed=1)
    (directory / "tweetner_label_map.json").write_text(json.dumps({"labels": {"PER": "person", "LOC": ["O"]}}))
    tagger = load_tagger(directory, device="cpu", precision="fp32")
    assert tagger.tagset.scheme == "BIOES"
    assert tagger.labels == ["person"]
    found = [e for entities in tagger.predict(RAW_TWEETS) for e in entities]
    assert found and {e.label for e in found} == {"person"}
    unmapped = load_tagger(directory, device="cpu", precision="fp32", label_map={"PER": "person"})
    assert {e.label for es in unmapped.predict(RAW_TWEETS) for e in es} <= {"person", "LOC"}


def test_a_directory_no_backend_reads_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(ModelDirectoryError, match="ForTokenClassification"):
        load_tagger(tmp_path)
    result = subprocess.run([sys.executable, "-m", "tweetner.cli", "predict", "--model", str(tmp_path), "hi"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "holds no model tweetner can run" in result.stderr


def test_train_arch_token_classification_writes_a_transformers_checkpoint(tmp_path: Path) -> None:
    conll, _ = write_tiny_corpus(tmp_path / "data")
    dev = tmp_path / "dev.conll"
    dev.write_text("Obama\tB-person\nwas\tO\nin\tO\nParis\tB-geo-loc\n")
    out = tmp_path / "trained"
    result = subprocess.run(
        [sys.executable, "-m", "tweetner.cli", "train", "--arch", "token-classification", "--train", str(conll),
         "--dev", str(dev), "--output", str(out), "--epochs", "1", "--max-steps", "1", "--model-name", "tc-test"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["arch"] == "token-classification" and summary["best_epoch"] == 1
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(str(out), local_files_only=True)
    assert set(model.config.id2label.values()) == {"O", "B-company", "I-company", "B-geo-loc", "I-geo-loc",
                                                   "B-person", "I-person"}
    tagger = load_tagger(out, device="cpu", precision="fp32")
    assert tagger.model_name == "tc-test"
    assert len(tagger.predict(RAW_TWEETS[:2])) == 2
