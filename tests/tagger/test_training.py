"""Training on real WNUT16 tweets with the packaged MiniLM encoder lowers the loss."""
from __future__ import annotations

import json

import torch

from tagger.inference import NerTagger
from tagger.trainer import TrainingArgs, train


def test_a_few_steps_on_50_tweets_lower_the_loss(tmp_path, shared_data):
    lines = (shared_data / "wnut16" / "train.conll").read_text().split("\n\n")[:50]
    data = tmp_path / "train50.conll"
    data.write_text("\n\n".join(lines) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared 2-core machine
    try:
        result = train(TrainingArgs(
            train=[str(data)], output=str(tmp_path / "model"), epochs=4, batch_size=8, lr=2e-4,
            head_lr=3e-3, warmup_ratio=0.0, negative_rate=0.2, entity_max_length=4, max_steps=16, seed=1,
        ))
    finally:
        torch.set_num_threads(threads)
    losses = result.losses
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4
    # the output is a loadable span-marker directory with a model card and a training log
    saved = tmp_path / "model"
    assert (saved / "README.md").is_file() and (saved / "model.safetensors").is_file()
    log = json.loads((saved / "training_log.json").read_text())
    assert log["args"]["seed"] == 1
    tagger = NerTagger.load(saved, device="cpu", precision="fp32")
    assert tagger.labels[0] == "O" and "person" in tagger.labels
    assert len(tagger.model_version) == 12  # unversioned models are named by their weights' digest


def test_second_stage_continues_from_a_checkpoint(tmp_path, shared_data):
    import pytest

    from tests.fixtures.tiny_model import make_tiny_model

    lines = (shared_data / "wnut16" / "train.conll").read_text().split("\n\n")[:20]
    data = tmp_path / "train20.conll"
    data.write_text("\n\n".join(lines) + "\n")
    labels = sorted({ln.split("\t")[1][2:] for block in lines for ln in block.splitlines()
                     if "\t" in ln and ln.split("\t")[1] != "O"})
    start = make_tiny_model(tmp_path / "start", labels=labels, entity_max_length=4)
    result = train(TrainingArgs(train=[str(data)], output=str(tmp_path / "stage2"), init_model=str(start),
                                epochs=1, batch_size=8, max_steps=3, negative_rate=0.3, seed=2))
    assert len(result.losses) == 3
    assert NerTagger.load(tmp_path / "stage2", device="cpu", precision="fp32").labels == ["O", *labels]
    wrong = make_tiny_model(tmp_path / "wrong", labels=("person",))
    with pytest.raises(ValueError, match="labels"):
        train(TrainingArgs(train=[str(data)], output=str(tmp_path / "x"), init_model=str(wrong), max_steps=1))
