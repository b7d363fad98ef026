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
