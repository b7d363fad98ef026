"""Entity normalization: the key under which mentions are counted together.

"Disney World", "disney world", "#DisneyWorld" and "@DisneyWorld!" all become "disney world";
the surface form stays in the mentions table.
"""
from __future__ import annotations

import re
import unicodedata

_PREFIXES = "#@＃＠"
# Boundaries inside a CamelCase tag: "DisneyWorld" -> Disney|World, "USOpen" -> US|Open.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def _is_edge_junk(ch: str) -> bool:
    # Punctuation and symbols (quotes, brackets, "!", emoji) at the edges are never part of a name.
    return unicodedata.category(ch)[0] in "PS"


def _strip_edges(s: str) -> str:
    start, end = 0, len(s)
    while start < end and (_is_edge_junk(s[start]) or s[start].isspace()):
        start += 1
    while end > start and (_is_edge_junk(s[end - 1]) or s[end - 1].isspace()):
        end -= 1
    return s[start:end]


def _split_tag(tag: str) -> str:
    """Split a hashtag/handle body into words; only when it starts upper case, so "iPhone" stays."""
    tag = tag.replace("_", " ")
    if tag[:1].isupper() and not tag.isupper():
        tag = _CAMEL.sub(" ", tag)
    return tag


def normalize_entity(surface: str) -> str:
    s = unicodedata.normalize("NFKC", surface).strip()
    # Leading quotes/brackets come off first, so '"#DisneyWorld"' is still seen as a hashtag.
    while s and s[0] not in _PREFIXES and (_is_edge_junk(s[0]) or s[0].isspace()):
        s = s[1:]
    if s[:1] and s[0] in _PREFIXES:
        s = _split_tag(s.lstrip(_PREFIXES))
    s = _strip_edges(s)
    s = _POSSESSIVE.sub("", s)
    s = _strip_edges(s)
    return _SPACES.sub(" ", s.casefold()).strip()
