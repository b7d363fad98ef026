"""Training a BiLSTM-CRF: word2vec on raw tweets plus the training text (gensim), then the network
on CoNLL sentences, keeping the best dev epoch; saved as config.json + vocab.json + safetensors."""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tagger.backends.bilstm_crf.features import CASES, SPECIALS, UNK, Vocabulary, normalise
from tagger.backends.bilstm_crf.inference import (ARCHITECTURE, CONFIG_NAME, SUBWORD_TOKENIZER_NAME, VOCAB_NAME,
                                                  WEIGHTS_NAME,
                                                  BiLstmCrfTagger)
from tagger.backends.bilstm_crf.model import BiLstmCrf, NetworkConfig, reverse_index
from tagger.conll import Sentence, read_conll
from tagger.backends.targets import allowed_tags, epoch_texts, load_training_corpora, tag_list
from tagger.corpora import TrainingText
from tagger.words import split_words

log = logging.getLogger(__name__)

SHARED_TWEETS = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "tweets"


@dataclass
class BiLstmCrfArgs:
    train: list[str]
    output: str
    dev: str | None = None
    # Raw tweets, one per line, for word2vec (default: ../shared/data/tweets/*.txt); a .conll
    # file contributes its words.
    embedding_text: list[str] | None = None
    epochs: int = 25
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    dropout: float = 0.5
    word_dim: int = 100
    char_dim: int = 30
    char_filters: int = 30
    hidden: int = 100
    # word2vec: skip-gram, window 5, words seen at least this often enter the vocabulary.
    w2v_epochs: int = 5
    min_count: int = 2
    # Probability of replacing a word seen once in training by <unk>: teaches the network what to
    # do with words it has never seen, which is most of what a tweet stream is made of.
    unk_replace: float = 0.3
    patience: int = 6
    # Keep the word2vec vectors fixed: with a few thousand training tweets, tuning the embeddings
    # of training words moves them away from the unseen words that are their neighbours, which
    # is what a dev or stream tweet is mostly made of. Words without a vector are then <unk>.
    freeze_embeddings: bool = False
    # Static subword embeddings from the packaged MiniLM's input embeddings (its 30k wordpieces,
    # reduced to this width by SVD and frozen; a word reads the mean of its pieces). 0 = off.
    subword_dim: int = 0
    # A directory where trained word2vec vectors are kept and reused by later runs on the same
    # text and settings (word2vec is minutes of a shared CPU; None: always train).
    vectors_cache: str | None = None
    seed: int = 42
    max_steps: int | None = None
    threads: int | None = None
    save_dtype: str = "float16"
    model_name: str | None = None
    model_version: str | None = None


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    dev_precision: float | None
    dev_recall: float | None
    dev_f1: float | None
    seconds: float


@dataclass
class BiLstmCrfResult:
    output: Path
    best_epoch: int | None
    best_dev_f1: float | None
    seconds: float
    history: list[EpochRecord] = field(default_factory=list)


def _raw_tweets(paths: Sequence[str] | None) -> list[list[str]]:
    files = list(paths) if paths else sorted(glob.glob(str(SHARED_TWEETS / "*.txt")))
    out = []
    for path in files:
        if path.endswith(".conll"):  # a labelled corpus lends its words (never its labels)
            out.extend(s.words for s in read_conll(path)[0])
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            out.extend([w.text for w in split_words(line)] for line in fh)
    return [s for s in out if s]


def train_word2vec(sentences: Sequence[Sequence[str]], args: BiLstmCrfArgs):
    from gensim.models import KeyedVectors, Word2Vec  # training only: inference never needs gensim

    corpus = [[normalise(w) for w in s] for s in sentences]
    cached = None
    if args.vectors_cache:
        key = hashlib.sha256(json.dumps([corpus, args.word_dim, args.min_count, args.w2v_epochs, args.seed])
                             .encode()).hexdigest()[:16]
        cached = Path(args.vectors_cache) / f"w2v-{key}.kv"
        if cached.is_file():
            log.info("word2vec: reusing %s", cached)
            return KeyedVectors.load(str(cached))
    vectors = Word2Vec(corpus, vector_size=args.word_dim, window=5, min_count=args.min_count, sg=1,
                       negative=10, epochs=args.w2v_epochs, workers=2, seed=args.seed).wv
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        vectors.save(str(cached))
    return vectors


def _subword_embeddings(width: int):
    """(table [pieces, width], tokenizer): MiniLM's wordpiece input embeddings, centred and
    projected on their top ``width`` principal directions, scaled to unit variance."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    from tagger.encoders import packaged_minilm_dir

    encoder = packaged_minilm_dir()
    with safe_open(str(encoder / "model.safetensors"), "pt") as fh:
        table = fh.get_tensor("embeddings.word_embeddings.weight").float()
    centred = table - table.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ v[:width].t()
    projected = projected / projected.std()
    projected[0] = 0.0  # [PAD]: the padding of a word's pieces
    return projected, Tokenizer.from_file(str(encoder / "tokenizer.json"))


def build_vocabulary(train: Sequence[TrainingText], raw: Sequence[Sequence[str]], vectors,
                     with_training_words: bool = True) -> Vocabulary:
    words = [*SPECIALS, *sorted(set(vectors.index_to_key) - set(SPECIALS))]
    known = set(words)
    if with_training_words:
        words += sorted({normalise(w) for s in train for w in s.words} - known)
    chars = Counter(c for s in raw for w in s for c in w)
    chars.update(c for s in train for w in s.words for c in w)
    return Vocabulary(words, [*SPECIALS, *sorted(c for c, n in chars.items() if n >= 3)])


def train(args: BiLstmCrfArgs, on_epoch: Callable[[EpochRecord], None] | None = None) -> BiLstmCrfResult:
    started = time.perf_counter()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev_sents: list[Sentence] = [s for s in read_conll(args.dev)[0] if s.words] if args.dev else []
    corpora = load_training_corpora(args.train, dev_sents)
    train_sents = [t for c in corpora for t in c.texts]
    tags = tag_list(corpora)
    raw = _raw_tweets(args.embedding_text)
    w2v_started = time.perf_counter()
    vectors = train_word2vec([*raw, *(s.words for s in train_sents)], args)
    log.info("word2vec: %d words from %d raw tweets + %d training sentences in %.0fs", len(vectors.index_to_key),
             len(raw), len(train_sents), time.perf_counter() - w2v_started)
    vocab = build_vocabulary(train_sents, raw, vectors, with_training_words=not args.freeze_embeddings)
    subword_table = None
    if args.subword_dim:
        subword_table, vocab.subword_tokenizer = _subword_embeddings(args.subword_dim)
    net_config = NetworkConfig(num_words=len(vocab.words), num_chars=len(vocab.chars), num_cases=len(CASES),
                               num_tags=len(tags), word_dim=args.word_dim, char_dim=args.char_dim,
                               char_filters=args.char_filters, hidden=args.hidden, dropout=args.dropout,
                               num_subwords=0 if subword_table is None else subword_table.shape[0],
                               subword_dim=args.subword_dim)
    network = BiLstmCrf(net_config, tags)
    if subword_table is not None:
        with torch.no_grad():
            network.subwords.weight.copy_(subword_table)
        network.subwords.weight.requires_grad_(False)
    with torch.no_grad():
        emb = network.words.weight
        emb.normal_(0.0, float(np.std(vectors.vectors)))
        emb[0].zero_()
        for i, w in enumerate(vocab.words):
            if w in vectors.key_to_index:
                emb[i] = torch.tensor(vectors[w])
    if args.freeze_embeddings:
        network.words.weight.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=args.lr,
                                 weight_decay=args.weight_decay)
    allowed = {id(t): allowed_tags(t, tags) for t in train_sents}
    counts = Counter(normalise(w) for s in train_sents for w in s.words)
    singletons = {vocab.word_id(w) for w, n in counts.items() if n == 1}
    rng = random.Random(args.seed)
    out = Path(args.output)
    history: list[EpochRecord] = []
    best_f1, best_epoch, bad_epochs, step = -1.0, None, 0, 0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        network.train()
        texts = epoch_texts(corpora, rng)
        rng.shuffle(texts)
        # Batches of similar lengths (the CRF and the LSTMs step once per word of the longest
        # tweet in a batch), taken in random order.
        texts.sort(key=lambda t: len(t.words))
        batches = [texts[lo : lo + args.batch_size] for lo in range(0, len(texts), args.batch_size)]
        rng.shuffle(batches)
        losses = []
        for rows in batches:
            batch = vocab.encode([t.words for t in rows])
            word_ids = batch.word_ids.copy()
            if args.unk_replace:
                drop = np.isin(word_ids, list(singletons)) & (np.random.random(word_ids.shape) < args.unk_replace)
                word_ids[drop] = UNK
            lengths = torch.from_numpy(batch.lengths)
            steps = word_ids.shape[1]
            may = np.ones((len(rows), steps, len(tags)), dtype=bool)
            for b, t in enumerate(rows):
                may[b, : len(t.words)] = allowed[id(t)]
            mask = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
            reverse = reverse_index(lengths, steps)
            em = network.emissions(torch.from_numpy(word_ids), torch.from_numpy(batch.case_ids),
                                   torch.from_numpy(batch.char_ids), reverse,
                                   None if batch.subword_ids is None else torch.from_numpy(batch.subword_ids))
            loss = network.crf.nll(em, torch.from_numpy(may), mask)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 5.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            if args.max_steps and step >= args.max_steps:
                break
        network.eval()
        p = r = f1 = None
        if dev_sents:
            tagger = BiLstmCrfTagger(network, vocab, tags, model_name="dev", model_version="dev")
            from tagger.evaluation import evaluate  # evaluation imports the loader, which imports us

            scores = evaluate(tagger, dev_sents).scores
            p, r, f1 = scores.precision, scores.recall, scores.f1
        record = EpochRecord(epoch, float(np.mean(losses)) if losses else 0.0, p, r, f1,
                             time.perf_counter() - t0)
        history.append(record)
        log.info("epoch %d loss %.3f dev F1 %s (%.0fs)", epoch, record.train_loss,
                 "-" if f1 is None else f"{f1:.4f}", record.seconds)
        if on_epoch:
            on_epoch(record)
        improved = f1 is None or f1 > best_f1
        if improved:
            best_f1, best_epoch, bad_epochs = (f1 if f1 is not None else best_f1), epoch, 0
            save(network, vocab, tags, out, args, history, train_sents)
        else:
            bad_epochs += 1
            if bad_epochs >= args.patience:
                break
        if args.max_steps and step >= args.max_steps:
            break
    # The history in the saved config covers the whole run, not only up to the best epoch.
    _update_history(out, history, best_epoch, time.perf_counter() - started)
    return BiLstmCrfResult(out, best_epoch, best_f1 if dev_sents else None, time.perf_counter() - started, history)


def save(network: BiLstmCrf, vocab: Vocabulary, tags: list[str], out: Path, args: BiLstmCrfArgs,
         history: list[EpochRecord], train_sents: Sequence[TrainingText]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    dtype = {"float16": torch.float16, "float32": torch.float32}[args.save_dtype]
    state = {k: v.detach().to(dtype).contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME))
    (out / VOCAB_NAME).write_text(json.dumps({"words": vocab.words, "chars": vocab.chars}, ensure_ascii=False),
                                  encoding="utf-8")
    if vocab.subword_tokenizer is not None:
        vocab.subword_tokenizer.save(str(out / SUBWORD_TOKENIZER_NAME))
    digest = hashlib.sha256((out / WEIGHTS_NAME).read_bytes()).hexdigest()[:12]
    name = args.model_name or "tweetner-bilstm-crf"
    config = {
        "architectures": ["BiLstmCrf"],
        "model_type": "tweetner-bilstm-crf",
        "tags": tags,
        "network": network.config.to_dict(),
        "tweetner": {
            "architecture": ARCHITECTURE,
            "model_name": name,
            "model_version": args.model_version or f"bilstm-crf-{digest}",
            "training_args": {k: v for k, v in asdict(args).items() if k not in ("output",)},
            "train_sentences": len(train_sents),
            "history": [asdict(h) for h in history],
        },
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def _update_history(out: Path, history: list[EpochRecord], best_epoch: int | None, seconds: float) -> None:
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    config["tweetner"].update({"history": [asdict(h) for h in history], "best_epoch": best_epoch,
                               "train_seconds": round(seconds, 1)})
    path.write_text(json.dumps(config, indent=2) + "\n")
    from tagger.backends.card import write_card  # the card reads the loader's architecture rules

    write_card(out)
