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
        return tuple(self.subword_tokenizer.encode(key, add_special_tokens=False).ids[:MAX_SUBWORDS])

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

    def features_many(self, words: Sequence[str]) -> list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]:
        """features() of many words, with the subword tokenizer called once for those not cached."""
        if self.subword_tokenizer is None:
            return [self.features(w) for w in words]
        missing = [w for w in dict.fromkeys(words) if w not in self._cache]
        if missing:
            keys = [normalise(w) for w in missing]
            encoded = self.subword_tokenizer.encode_batch(keys, add_special_tokens=False)
            get = self._char_id.get
            if len(self._cache) + len(missing) > 500_000:
                self._cache.clear()
            for word, key, enc in zip(missing, keys, encoded):
                pieces = () if key in (URL, USER) else tuple(enc.ids[:MAX_SUBWORDS])
                self._cache[word] = (self.word_id(word), casing(word),
                                     tuple(get(c, UNK) for c in word[:MAX_WORD_CHARS]), pieces)
        cache = self._cache
        return [cache[w] if w in cache else self.features(w) for w in words]

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
