"""Words to the three inputs of the BiLSTM-CRF: a word id (lower-cased, normalised), a casing class
and the word's characters as they were written."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
URL, USER = "<url>", "<user>"
# Longer words keep their first characters only: casing and affixes live at the edges and the
# CNN's cost grows with the longest word of a batch.
MAX_WORD_CHARS = 20

_DIGIT = re.compile(r"\d")
# Casing classes, 0 is padding.
CASES = ("<pad>", "lower", "title", "upper", "mixed", "number", "has-digit", "punct", "mention",
         "hashtag", "url", "other")
_CASE_ID = {name: i for i, name in enumerate(CASES)}


def normalise(word: str) -> str:
    """The form words are looked up by: links and @mentions collapse to one token each (they are
    never named by their text), digits to 0, everything lower-cased."""
    if word.startswith(("http://", "https://", "www.")):
        return URL
    if len(word) > 1 and word[0] in "@\uff20":
        return USER
    return _DIGIT.sub("0", word.lower())


def casing(word: str) -> int:
    if word.startswith(("http://", "https://", "www.")):
        return _CASE_ID["url"]
    head = word[0]
    if len(word) > 1 and head in "@\uff20":
        return _CASE_ID["mention"]
    if len(word) > 1 and head in "#\uff03":
        return _CASE_ID["hashtag"]
    if word.isdigit():
        return _CASE_ID["number"]
    if word.isalpha():
        if word.islower():
            return _CASE_ID["lower"]
        if word.isupper():
            return _CASE_ID["upper"]
        if head.isupper() and word[1:].islower():
            return _CASE_ID["title"]
        return _CASE_ID["mixed"]
    if any(c.isdigit() for c in word):
        return _CASE_ID["has-digit"]
    if not any(c.isalnum() for c in word):
        return _CASE_ID["punct"]
    if word.islower():
        return _CASE_ID["lower"]
    if head.isupper():
        return _CASE_ID["title"]
    return _CASE_ID["other"]


@dataclass
class Batch:
    """A batch of sentences as padded arrays; ``lengths`` in words (every sentence has >= 1)."""

    word_ids: np.ndarray  # [B, T] int64
    case_ids: np.ndarray  # [B, T] int64
    char_ids: np.ndarray  # [B, T, L] int64
    lengths: np.ndarray  # [B] int64
    subword_ids: np.ndarray | None = None  # [B, T, S] int64, 0 = padding


# A word's first wordpieces: enough for its meaning, bounded for the array.
MAX_SUBWORDS = 6


def _is_bert_wordpiece(tokenizer) -> bool:
    """A lower-casing BERT normaliser, BERT pre-tokenizer and WordPiece model (the packaged
    MiniLM's): the pipeline subword_pieces may bypass for plain ASCII words."""
    from tokenizers import models, normalizers, pre_tokenizers

    normalizer = tokenizer.normalizer
    return (isinstance(tokenizer.model, models.WordPiece)
            and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
            and isinstance(normalizer, normalizers.BertNormalizer) and normalizer.lowercase)


@dataclass
class Vocabulary:
    """Word and character ids; words are stored normalised."""

    words: list[str]
    chars: list[str]
    # A word's wordpiece ids (a Hugging Face tokenizer's), when the network reads static subword
    # embeddings beside the word2vec ones.
    subword_tokenizer: object | None = None
    _word_id: dict[str, int] = field(init=False, repr=False)
    _char_id: dict[str, int] = field(init=False, repr=False)
    # Per surface form: (word id, casing, char ids). Tweets repeat their words, so most lookups
    # are one dict hit; bounded so a long-running worker does not grow without end.
    _cache: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._word_id = {w: i for i, w in enumerate(self.words)}
        self._char_id = {c: i for i, c in enumerate(self.chars)}
        self._cache = {}

    def word_id(self, word: str) -> int:
        key = normalise(word)
        found = self._word_id.get(key)
        if found is None and len(key) > 1 and key[0] in "#\uff03":
            found = self._word_id.get(key[1:])  # an unknown #hashtag is read as its word
        return UNK if found is None else found

    def subword_ids(self, word: str) -> tuple[int, ...]:
        if self.subword_tokenizer is None:
            return ()
        key = normalise(word)
        if key in (URL, USER):
            return ()
        return self.subword_pieces([key])[key]

    def subword_pieces(self, keys: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """The first wordpiece ids of each normalised word, with no padding ids.

        A lower-case ASCII letters-and-digits key is one word to a BERT normaliser and
        pre-tokenizer (they change nothing in it), so it goes to the WordPiece model directly,
        ~10x cheaper than a full encode; other keys take the whole pipeline, without the
        padding to 128 a saved tokenizer carries."""
        tok = self.subword_tokenizer
        if tok.padding is not None:
            tok.no_padding()  # pieces past a word's own are padding to us anyway
        direct = _is_bert_wordpiece(tok)
        out: dict[str, tuple[int, ...]] = {}
        rest: list[str] = []
        if direct:
            tokenize = tok.model.tokenize
            for key in dict.fromkeys(keys):
                if key.isascii() and key.isalnum():
                    out[key] = tuple([t.id for t in tokenize(key)[:MAX_SUBWORDS]])
                else:
                    rest.append(key)
        else:
            rest = list(dict.fromkeys(keys))
        if rest:
            encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
            for key, enc in zip(rest, encode(rest, add_special_tokens=False)):
                out[key] = tuple(enc.ids[:MAX_SUBWORDS])
        return out

    def features(self, word: str) -> tuple[int, int, tuple[int, ...], tuple[int, ...]]:
        hit = self._cache.get(word)
        if hit is None:
            get = self._char_id.get
            hit = (self.word_id(word), casing(word), tuple(get(c, UNK) for c in word[:MAX_WORD_CHARS]),
                   self.subword_ids(word))
            if len(self._cache) > 500_000:
                self._cache.clear()
            self._cache[word] = hit
        return hit

    def features_many(self, words: Sequence[str], keep: bool = True
                      ) -> list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]:
        """features() of many words, with the subword tokenizer called once for the distinct
        normalised forms not cached. ``keep=False``: compute without caching (inference keeps
        each word's result in its own table and asks once per word)."""
        if keep and self.subword_tokenizer is None:
            return [self.features(w) for w in words]
        cache = self._cache if keep else {}
        missing = [w for w in dict.fromkeys(words) if w not in cache]
        if keep and len(cache) + len(missing) > 500_000:
            cache.clear()
            missing = list(dict.fromkeys(words))
        if missing:
            keys = [normalise(w) for w in missing]
            pieces_of: dict[str, tuple[int, ...]] = {}
            if self.subword_tokenizer is not None:
                pieces_of = self.subword_pieces([k for k in keys if k not in (URL, USER)])
            get = self._char_id.get
            word_id = self._word_id.get
            for word, key in zip(missing, keys):
                found = word_id(key)
                if found is None and len(key) > 1 and key[0] in "#\uff03":
                    found = word_id(key[1:])  # an unknown #hashtag is read as its word
                cache[word] = (UNK if found is None else found, casing(word),
                               tuple([get(c, UNK) for c in word[:MAX_WORD_CHARS]]), pieces_of.get(key, ()))
        return [cache[w] for w in words]

    def encode(self, sentences: Sequence[Sequence[str]]) -> Batch:
        """Padded arrays for non-empty sentences."""
        n = len(sentences)
        longest = max(len(s) for s in sentences)
        feats = [[self.features(w) for w in s] for s in sentences]
        longest_word = max(len(f[2]) for fs in feats for f in fs)
        word_ids = np.zeros((n, longest), dtype=np.int64)
        case_ids = np.zeros((n, longest), dtype=np.int64)
        char_ids = np.zeros((n, longest, max(longest_word, 1)), dtype=np.int64)
        subs = np.zeros((n, longest, MAX_SUBWORDS), dtype=np.int64) if self.subword_tokenizer else None
        lengths = np.zeros(n, dtype=np.int64)
        for b, fs in enumerate(feats):
            lengths[b] = len(fs)
            for t, (wid, cid, chars, pieces) in enumerate(fs):
                word_ids[b, t] = wid
                case_ids[b, t] = cid
                char_ids[b, t, : len(chars)] = chars
                if subs is not None and pieces:
                    subs[b, t, : len(pieces)] = pieces
        return Batch(word_ids, case_ids, char_ids, lengths, subs)
