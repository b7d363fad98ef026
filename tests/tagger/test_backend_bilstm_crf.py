"""The BiLSTM-CRF backend: trained here on three tweets (word2vec included), saved as a directory,
loaded by it, tagging raw tweets with offsets on the raw text; the CRF against brute force."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tagger.backends.bilstm_crf.model import Crf, reverse_index
from tagger.conll import read_conll
from tagger.evaluation import evaluate
from tagger.loading import architecture_of, load_tagger
from tests.fixtures.tiny_backends import RAW_TWEETS, make_tiny_bilstm_crf, write_tiny_corpus

TAGS = ["O", "B-a", "I-a", "B-b", "I-b"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bilstm_crf(tmp_path_factory.mktemp("bilstm") / "model")


def test_saved_as_config_vocabularies_and_safetensors(model_dir: Path) -> None:
    assert sorted(p.name for p in model_dir.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                           "vocab.json"]
    card = (model_dir / "README.md").read_text()
    assert "# tiny-bilstm-crf" in card and "**bilstm-crf**" in card and "| epoch |" in card
    config = json.loads((model_dir / "config.json").read_text())
    assert config["tweetner"]["architecture"] == "bilstm-crf" and architecture_of(model_dir) == "bilstm-crf"
    assert config["tweetner"]["best_epoch"] >= 1 and config["tweetner"]["history"]
    vocab = json.loads((model_dir / "vocab.json").read_text())
    assert {"<pad>", "<unk>", "<url>", "<user>"} <= set(vocab["words"]) and "😀" in vocab["words"]


def test_raw_tweets_tagged_with_offsets_on_the_raw_text(model_dir: Path) -> None:
    tagger = load_tagger(model_dir)
    assert (tagger.model_name, tagger.model_version, tagger.labels) == (
        "tiny-bilstm-crf", "tiny-0", ["company", "geo-loc", "person"])
    text = "@bob 😀 Taylor Swift sang in London tonight https://t.co/abc 🇬🇧"
    [entities] = tagger.predict([text])
    assert {(text[e.start:e.end], e.label) for e in entities} == {("Taylor Swift", "person"), ("London", "geo-loc")}
    assert all(text[e.start:e.end] == e.text and 0.5 < e.score <= 1.0 for e in entities)
    assert tagger.predict(["", "   "]) == [[], []]


def test_evaluate_on_its_training_tweets(model_dir: Path, tmp_path: Path) -> None:
    conll, _ = write_tiny_corpus(tmp_path)
    sentences, _ = read_conll(conll)
    scores = evaluate(load_tagger(model_dir), sentences).scores
    assert (scores.true_positives, scores.predicted, scores.gold) == (6, 6, 6)


def test_the_word_cache_changes_no_result(model_dir: Path) -> None:
    from tagger.backends.bilstm_crf import inference

    tagger = load_tagger(model_dir)
    cold = tagger.predict(RAW_TWEETS)
    assert tagger.predict(RAW_TWEETS) == cold  # every word cached now
    old = inference._MAX_CACHED_WORDS
    inference._MAX_CACHED_WORDS = 5  # forces resets inside a batch
    try:
        tagger._reset_cache()
        assert tagger.predict(RAW_TWEETS) == cold
    finally:
        inference._MAX_CACHED_WORDS = old


def _paths(n: int, crf: Crf):
    trans, start, end = crf._scores()
    for path in itertools.product(range(len(TAGS)), repeat=n):
        score = start[path[0]] + end[path[-1]] + sum(trans[a, b] for a, b in zip(path, path[1:]))
        yield path, score


@torch.no_grad()
def test_crf_viterbi_marginals_and_likelihood_against_brute_force() -> None:
    torch.manual_seed(0)
    crf = Crf(TAGS)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    lengths = torch.tensor([4, 2, 1])
    em = torch.randn(3, 4, len(TAGS))
    reverse = reverse_index(lengths, 4)
    viterbi = crf.viterbi(em, lengths)
    for b, n in enumerate(lengths.tolist()):
        scored = {path: float(s + sum(em[b, t, tag] for t, tag in enumerate(path))) for path, s in _paths(n, crf)}
        best = max(scored, key=scored.get)
        assert tuple(viterbi[b, :n].tolist()) == best
        log_z = torch.logsumexp(torch.tensor(list(scored.values())), 0)
        marginals = crf.path_marginals(em[b : b + 1], lengths[b : b + 1], reverse[b : b + 1], viterbi[b : b + 1])
        for t in range(n):
            mass = torch.logsumexp(torch.tensor([v for p, v in scored.items() if p[t] == best[t]]), 0)
            assert marginals[0, t].item() == pytest.approx(float((mass - log_z).exp()), abs=1e-4)
        # one allowed tag per word: the usual likelihood of that path
        allowed = torch.zeros(1, 4, len(TAGS), dtype=torch.bool)
        allowed[0, torch.arange(n), torch.tensor(best)] = True
        mask = torch.arange(4).unsqueeze(0) < n
        nll = crf.nll(em[b : b + 1], allowed, mask)
        assert nll.item() == pytest.approx(float(log_z - scored[best]), abs=1e-3)


def test_crf_never_decodes_an_inside_tag_that_continues_nothing() -> None:
    torch.manual_seed(1)
    crf = Crf(TAGS)
    em = torch.randn(64, 12, len(TAGS)) * 5
    paths = crf.viterbi(em, torch.full((64,), 12)).tolist()
    for path in paths:
        for prev, cur in zip(["O", *[TAGS[i] for i in path]], [TAGS[i] for i in path]):
            if cur.startswith("I-"):
                assert prev[2:] == cur[2:], path


def test_train_arch_bilstm_crf_from_the_command(tmp_path: Path) -> None:
    conll, raw = write_tiny_corpus(tmp_path / "data")
    out = tmp_path / "trained"
    result = subprocess.run(
        [sys.executable, "-m", "tweetner.cli", "train", "--arch", "bilstm-crf", "--train", str(conll),
         "--output", str(out), "--epochs", "2", "--embedding-text", str(raw), "--seed", "3"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["arch"] == "bilstm-crf" and len(summary["history"]) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["tweetner"]["training_args"]["seed"] == 3 and config["tweetner"]["training_args"]["epochs"] == 2
    assert len(load_tagger(out).predict(RAW_TWEETS[:3])) == 3


def _assert_inference_equals_the_network(tagger) -> None:
    # Longest first, as tag_words orders a batch; words of every length up to the longest.
    sentences = sorted((t.split() for t in RAW_TWEETS), key=len, reverse=True)
    with torch.inference_mode():
        index, lengths = tagger._inputs(sentences)
        reverse = reverse_index(lengths, index.shape[1])
        ours = tagger._emissions(index, reverse, lengths)
        batch = tagger.vocab.encode(sentences)
        subwords = None if batch.subword_ids is None else torch.from_numpy(batch.subword_ids)
        x = tagger.network.word_inputs(torch.from_numpy(batch.word_ids), torch.from_numpy(batch.case_ids),
                                       torch.from_numpy(batch.char_ids), subwords)
        theirs = tagger.network.emissions_from_inputs(x, reverse)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(ours[b, :n], theirs[b, :n], atol=1e-5)


def test_the_unrolled_inference_lstm_equals_torch_lstm(model_dir: Path) -> None:
    """The word table (char CNN as lookups, doubled cell gate) and the recurrence over running
    sentences only give the network's own emissions."""
    _assert_inference_equals_the_network(load_tagger(model_dir))


def test_the_unrolled_inference_with_subwords_equals_torch_lstm(tmp_path: Path) -> None:
    _assert_inference_equals_the_network(load_tagger(make_tiny_bilstm_crf(tmp_path / "sub", subword_dim=8)))


def test_viterbi_takes_sentences_in_any_order() -> None:
    torch.manual_seed(2)
    crf = Crf(TAGS)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    lengths = torch.tensor([2, 7, 1, 7, 4])
    em = torch.randn(5, 7, len(TAGS))
    paths = crf.viterbi(em, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = crf.viterbi(em[b : b + 1, :n], lengths[b : b + 1])
        assert paths[b, :n].tolist() == alone[0].tolist() and not paths[b, n:].any()


def test_static_subword_embeddings_save_and_load(tmp_path: Path) -> None:
    directory = make_tiny_bilstm_crf(tmp_path / "sub", subword_dim=8)
    assert (directory / "subword_tokenizer.json").is_file()
    tagger = load_tagger(directory)
    assert tagger.network.subwords is not None
    [entities] = tagger.predict(["I met Barack Obama at Google !!"])
    assert {(e.text, e.label) for e in entities} == {("Barack Obama", "person"), ("Google", "company")}


def test_the_shipped_bilstm_crf_loads_and_tags() -> None:
    directory = Path(__file__).resolve().parents[2] / "tagger" / "bilstm_crf_model"
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 20 * 1024 * 1024, f"the shipped BiLSTM-CRF is {size} bytes; the limit is 20 MB"
    tagger = load_tagger(directory)
    assert len(tagger.labels) == 10 and tagger.model_name == "tweetner-wnut16-bilstm-crf"
    text = "@jimmyfallon on tour with Taylor Swift 😀 https://t.co/x"
    [entities] = tagger.predict([text])
    assert ("Taylor Swift", "person") in {(e.text, e.label) for e in entities}
    assert all(text[e.start:e.end] == e.text for e in entities)


def test_subword_pieces_equal_the_tokenizers_full_encode(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    from tagger.backends.bilstm_crf.features import MAX_SUBWORDS, normalise

    directory = make_tiny_bilstm_crf(tmp_path / "sub", subword_dim=8)
    vocab = load_tagger(directory).vocab
    reference = Tokenizer.from_file(str(directory / "subword_tokenizer.json"))
    words = ["Obama", "smallbiz", "#NowPlaying", "don't", "isn't", "café", "Zürich", "2016", "x1000",
             "東京", "naïve", "U.S.", "😀", "supercalifragilisticexpialidocious", "a"]
    keys = [normalise(w) for w in words]
    pieces = vocab.subword_pieces(keys)
    for key in keys:
        full = [i for i in reference.encode(key, add_special_tokens=False).ids if i != reference.padding["pad_id"]] \
            if reference.padding else reference.encode(key, add_special_tokens=False).ids
        assert pieces[key] == tuple(full[:MAX_SUBWORDS]), key


def test_a_batch_runs_on_one_torch_thread_and_restores_the_callers(model_dir: Path) -> None:
    tagger = load_tagger(model_dir)
    seen = []
    emissions = tagger._emissions
    tagger._emissions = lambda *a: (seen.append(torch.get_num_threads()), emissions(*a))[1]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cold = tagger.predict(RAW_TWEETS)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert tagger.predict(RAW_TWEETS) == cold
