"""Candidate spans that cannot be entities, dropped before the encoder sees them.

Every candidate costs two marker tokens in the encoder, so the tagger's time is roughly
proportional to the candidates it scores. Most of a tweet's spans start, end or break on something
no entity does. The rules below are structural (URLs, @mentions, punctuation, closed-class words),
and each was checked against every gold entity of up to 6 words in WNUT16 train/dev, WNUT15 dev,
WNUT17 train/dev, BTC (PER/LOC/ORG, @mentions excluded as the training recipe does) and
Tweebank-NER: 18,824 entities, none dropped (``tests/tagger/test_span_filter.py`` re-checks it where
../shared/data exists). Where annotators did label something odd (a lone "." or a URL as an ORG in
BTC, "SML Movie :" in WNUT17) the rule allows it rather than lose a gold entity.

On the first 2,000 tweets of ../shared/data/tweets the rules drop 64% of the candidates of up to 6
words (57% of the WNUT16 dev sentences'). The filter only removes spans: a kept span's
probabilities do not change (a marker attends the text, itself and its partner only), so the exact
mode simply leaves it off.

The rule on closed-class words inside a span leans on the data more than the others: a title typed
in lower case with a pronoun or an auxiliary inside ("how i met your mother") is never scored. No
gold entity of the sets above is such a span, and WNUT16 dev F1 did not move; derived with one
corpus left out, the rule would have dropped 5 of that corpus's 1,327 entities of 3-6 words
(docs/benchmarks.md).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = ["keep_mask", "keep_span"]

_URL = re.compile(r"(?i)^(?:https?:|www\.)|://")
QUOTES = frozenset("\"'`“”‘’«»")
# A multi-word entity may start / end on these punctuation words (gold has "# Garyjohnson" in BTC's
# tokenization, "- Brooke", "U . S .", "NY )", "Who 's on first ?", "Hello !" ...), or on quotes.
FIRST_PUNCT_OK = frozenset({"#", "-", ".", "_"})
LAST_PUNCT_OK = frozenset({".", ")", ":", "?", "/", "…", "!"})
# Clause breaks: inside an entity only ever between two capitalised (or numeric) words:
# "Las Vegas , NV", "Mockingjay : Part 1", "AC / DC", "Another Day ( Perfecto Mix )".
BREAKS = frozenset({",", ":", ";", "!", "?", "(", ")", "/", '"', "...", "..", "…", "--", "“", "”",
                    "!!", "?!", "!?", "??"})
# Closed-class words, lower case as typed ("The", "I" are not in it). No gold entity is one of
# them alone or ends on one; the few that start ("the Elevator Company", "when im gone", "if you think i 'm
# sexy"), end ("pro am") or are one (below) in gold are allowed there.
FUNCTION_WORDS = frozenset(
    "a an the and or but nor of for in on at to by with from as about into onto than then is are was "
    "were be been being am have has had do does did will would can could should shall may might must "
    "that this these those it its me my you your we us our they them their he him his she her i so "
    "not no just up out if when what who which there here".split())
FUNCTION_FIRST_OK = frozenset({"the", "to", "you", "it", "i", "when", "if"})
FUNCTION_LAST_OK = frozenset({"on", "this", "am"})
# Labelled alone in gold: WNUT17 "we" (group), "its" (person), BTC "they" (PER).
FUNCTION_SINGLE_OK = frozenset({"we", "its", "they"})
# Inside an entity (neither its first nor its last word) gold has only these closed-class words,
# lower case as typed: "Bank of America", "Tom and Jerry", "Gone with the Wind", "if you think
# i 'm sexy"... Pronouns, auxiliaries and the rest ("that", "it", "my", "was", "have"...) never
# sit inside one; a candidate they sit inside is a clause, not a name. Such spans are a sixth of
# what the rules above keep on raw tweets.
FUNCTION_INNER_OK = frozenset({"a", "am", "and", "at", "by", "do", "for", "from", "i", "in", "is", "no", "of",
                               "on", "or", "so", "the", "to", "with", "you"})
# No entity starts on a clitic or an ampersand, or ends on an ampersand ("'s Paris", "Tom &amp;").
CLITICS = frozenset({"'s", "’s"})
AMPERSANDS = frozenset({"&", "&amp;"})


def _is_punct(word: str) -> bool:
    return not any(c.isalnum() for c in word)


def _shape(word: str) -> str:
    c = word[:1]
    if c.isupper():
        return "U"
    if c.isdigit():
        return "D"
    if c.isalpha():
        return "l"
    return "P" if _is_punct(word) else "o"


def _word_flags(words: Sequence[str]) -> dict[str, np.ndarray]:
    n = len(words)
    url = np.zeros(n, bool)
    mention = np.zeros(n, bool)
    punct = np.zeros(n, bool)
    single_bad = np.zeros(n, bool)
    first_bad = np.zeros(n, bool)
    last_bad = np.zeros(n, bool)
    inner_bad = np.zeros(n, bool)
    shapes = [_shape(w) for w in words]
    for i, w in enumerate(words):
        is_punct = _is_punct(w)
        quote = bool(w) and all(c in QUOTES for c in w)
        url[i] = bool(_URL.search(w))
        mention[i] = w.startswith("@") and len(w) > 1
        punct[i] = is_punct
        func = w in FUNCTION_WORDS
        single_bad[i] = (is_punct and w != "." and not quote) or (func and w not in FUNCTION_SINGLE_OK)
        first_bad[i] = ((is_punct and w not in FIRST_PUNCT_OK and not quote) or (func and w not in FUNCTION_FIRST_OK)
                        or w in CLITICS or w in AMPERSANDS)
        last_bad[i] = ((is_punct and w not in LAST_PUNCT_OK and not quote) or (func and w not in FUNCTION_LAST_OK)
                       or w in AMPERSANDS)
        # keep_mask counts this flag over a span's inner words only, so it may be set anywhere.
        inner_bad[i] = func and w not in FUNCTION_INNER_OK
        if is_punct and 0 < i < n - 1:
            before, after = shapes[i - 1], shapes[i + 1]
            if w in BREAKS:
                inner_bad[i] = not (before in "UD" and after in "UD")
            elif w == ".":
                inner_bad[i] = before == "l" and after in "UP"  # a sentence end: "... win . Next"
    return {"url": url, "mention": mention, "punct": punct, "single_bad": single_bad,
            "first_bad": first_bad, "last_bad": last_bad, "inner_bad": inner_bad}


def _counts(flags: np.ndarray) -> np.ndarray:
    """Prefix sums: flags[a:b].sum() == c[b] - c[a]."""
    out = np.zeros(len(flags) + 1, np.int64)
    np.cumsum(flags, out=out[1:])
    return out


def keep_mask(words: Sequence[str], spans: np.ndarray) -> np.ndarray:
    """For each ``(start, end)`` word span (end exclusive), whether it may be an entity."""
    if len(spans) == 0:
        return np.zeros(0, bool)
    f = _word_flags(words)
    s, e = spans[:, 0], spans[:, 1]
    single = (e - s) == 1
    last = e - 1
    second = np.minimum(s + 1, len(words) - 1)
    url, mention, inner = _counts(f["url"]), _counts(f["mention"]), _counts(f["inner_bad"])
    multi_bad = (
        (url[e] - url[s] > 0)  # a URL is only ever an entity alone
        | (mention[e] - mention[s + 1] > 0)  # an @mention only ever starts one ("@Cromwell Field")
        | (f["mention"][s] & f["punct"][second])  # "@user :" ...
        | f["first_bad"][s]
        | f["last_bad"][last]
        | (inner[np.maximum(last, s + 1)] - inner[s + 1] > 0)  # a break or a clause word between its first and last
    )
    return np.where(single, ~f["single_bad"][s], ~multi_bad)


def keep_span(words: Sequence[str]) -> bool:
    """Whether the whole of ``words`` may be one entity (the rule for one span)."""
    words = list(words)
    return bool(keep_mask(words, np.array([[0, len(words)]], dtype=np.int64))[0]) if words else False
