"""The shipped default model loads offline by default and finds obvious entities."""
from __future__ import annotations

import json

from tagger.inference import DEFAULT_MODEL_DIR, NerTagger


def test_default_model_is_shipped_small_and_loads_by_default():
    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 60 * 1024 * 1024
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "span-marker" and config["torch_dtype"] == "float16"
    assert (DEFAULT_MODEL_DIR / "README.md").is_file()
    tagger = NerTagger.load(device="cpu", precision="fp32")
    assert tagger.model_name == "tweetner-wnut16-minilm"
    text = "Barack Obama visits Paris and meets Emmanuel Macron"
    [entities] = tagger.predict([text])
    found = {(e.text, e.label) for e in entities}
    assert ("Barack Obama", "person") in found and ("Paris", "geo-loc") in found
    for e in entities:
        assert text[e.start : e.end] == e.text
