"""Word shapes: the casing and tweet-syntax cues an uncased encoder cannot see.

all-MiniLM-L6-v2 lower-cases its input, so "Apple" and "apple", "#Oscars" and "oscars" reach it
as the same tokens, yet capitals, @, # and URLs are among the strongest entity cues in tweets.
A model with ``word_shape_dim > 0`` embeds the shape of each candidate span's first and last
word and reads it beside the two marker states. Shape ids are part of a model's format: never
renumber them, only append.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

PAD = 0
LOWER = 1  # apple
TITLE = 2  # Apple
UPPER = 3  # APPLE (two letters or more)
MIXED = 4  # iPhone, McDonald
LETTER_UPPER = 5  # A
DIGITS = 6  # 2016, 3rd, 9:30
MENTION = 7  # @apple
HASHTAG_LOWER = 8  # #apple
HASHTAG_CASED = 9  # #Apple, #NBAFinals
URL = 10  # http://t.co/..., www.x.com
PUNCT = 11  # , ! ... :)
OTHER = 12  # emoji, symbols, non-Latin scripts without case
NUM_SHAPES = 13

_URL_PREFIXES = ("http://", "https://", "www.")


def word_shape(word: str) -> int:
    if not word:
        return OTHER
    lowered = word.lower()
    if lowered.startswith(_URL_PREFIXES):
        return URL
    if len(word) > 1 and word[0] == "@":
        return MENTION
    if len(word) > 1 and word[0] == "#":
        return HASHTAG_CASED if any(c.isupper() for c in word[1:]) else HASHTAG_LOWER
    letters = [c for c in word if c.isalpha()]
    if not letters:
        if any(c.isdigit() for c in word):
            return DIGITS
        return PUNCT if all(not c.isalnum() and c.isascii() for c in word) else OTHER
    if any(c.isdigit() for c in word):
        return DIGITS
    uppers = sum(c.isupper() for c in letters)
    if uppers == 0:
        # Scripts without case (Arabic, CJK...) have no lower-case letters either.
        return LOWER if any(c.islower() for c in letters) else OTHER
    if uppers == len(letters):
        return LETTER_UPPER if len(letters) == 1 else UPPER
    if letters[0].isupper() and uppers == 1:
        return TITLE
    return MIXED


def word_shapes(words: Sequence[str]) -> np.ndarray:
    return np.fromiter((word_shape(w) for w in words), dtype=np.int64, count=len(words))


def encoder_text(word: str) -> str:
    """What the encoder reads for a word when a model strips hashtags: ``#Apple`` -> ``Apple``.

    The span (and so the entity's offsets and text) keeps the ``#``; only the subword tokens
    change, so that a hashtag reads like the word it spells. The shape feature still says it was
    a hashtag.
    """
    return word[1:] if len(word) > 1 and word[0] == "#" else word
