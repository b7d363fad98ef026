"""Split raw tweet text into words whose character offsets index the original string.

The model tags words, and the pipeline reports entities as character spans of the
tweet it received, so every word keeps ``original[start:end] == text``. Nothing is
rewritten (no HTML-entity decoding, no normalisation): only whitespace and invisible
format characters are dropped, and they only ever separate words.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Word", "split_words", "words_from_pretokenized"]


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: int  # char offset into the original string
    end: int  # exclusive; original[start:end] == text


def _char_ranges(codepoints: list[int]) -> str:
    """Compact sorted code points into a regex character-class body of ranges."""
    parts: list[str] = []
    i = 0
    while i < len(codepoints):
        j = i
        while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
            j += 1
        lo, hi = codepoints[i], codepoints[j]
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
        i = j + 1
    return "".join(parts)


# Arabic/Syriac number signs etc. are category Cf but are drawn on screen, so they
# must not be dropped as "invisible".
_VISIBLE_FORMAT = {0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD}
# Rendered as blanks and used by tweeters as padding; none of them carries meaning.
_BLANK_FILLERS = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800}
_ZWJ = 0x200D
_TAGS = range(0xE0020, 0xE0080)  # only meaningful inside emoji tag sequences (subdivision flags)


def _scan_unicode() -> tuple[str, str]:
    """Return (combining marks, invisible separators) as character-class bodies.

    Computed from unicodedata rather than hard-coded so it follows the running
    Python's Unicode version. Only planes 0-1 and 14 hold marks or format
    characters, which keeps the import-time scan to ~40 ms.
    """
    marks: list[int] = []
    invisible: list[int] = []
    for cp in (*range(0x20000), *range(0xE0000, 0xE1000)):
        cat = unicodedata.category(chr(cp))
        if cat in ("Mn", "Mc", "Me"):
            marks.append(cp)
        elif cat == "Cf" and cp not in _VISIBLE_FORMAT and cp != _ZWJ and cp not in _TAGS:
            invisible.append(cp)
        elif cat == "Cc" and not chr(cp).isspace():
            invisible.append(cp)
    # ZWJ and tag characters are separators too, except inside emoji sequences; the
    # emoji alternative below is tried first and consumes them there.
    invisible.extend([_ZWJ, *_TAGS, *_BLANK_FILLERS])
    return _char_ranges(marks), _char_ranges(sorted(invisible))


_MARKS, _INVISIBLE = _scan_unicode()
_SEP = rf"\s{_INVISIBLE}"  # whatever separates words and is never part of one
_W = rf"[\w{_MARKS}]"  # \w alone misses vowel signs and viramas (Devanagari, Thai, ...)

# Emoji: code points whose default presentation (or VS16 form) is a pictograph.
# Approximates Unicode's Extended_Pictographic property, which `re` cannot query.
# Alphanumeric symbols in these blocks (dingbat digits, U+1F100..U+1F10C) are left
# out so that every alphanumeric character is a word character: split_words relies
# on that for its fast path.
_PICTO = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u23cf"
    "\u23e9-\u23f3\u23f8-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u2775\u2794-\u27bf"
    "\u2934\u2935\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299"
    "\U0001f000-\U0001f0ff\U0001f10d-\U0001f1e5\U0001f200-\U0001faff"
)
_EMOJI_MOD = "(?:\ufe0f|\u20e3|[\U0001f3fb-\U0001f3ff]|[\U000e0020-\U000e007f]+)*"
_EMOJI_ONE = rf"[{_PICTO}]{_EMOJI_MOD}"
_EMOJI = (
    r"[\U0001f1e6-\U0001f1ff]{2}"  # regional-indicator pair = one flag
    r"|[0-9#*]\ufe0f?\u20e3"  # keycap
    rf"|{_EMOJI_ONE}(?:\u200d{_EMOJI_ONE})*"  # ZWJ sequences: family, profession, ...
)

# Top-level domains that mark a scheme-less "example.com/path" as a link.
_TLDS = "com|org|net|edu|gov|io|co|ly|me|tv|us|uk|ca|de|fr|it|gl|gd|be|info|biz|app|news"
# URL bodies are printable ASCII; they never end in sentence punctuation, which
# the closing class excludes so "(see https://t.co/abc)." leaves ")." outside.
_URL_TAIL = r"(?:[!-~]*[A-Za-z0-9/_\-=#&%+~*@$])?"
_URL = (
    rf"(?:https?://|www\.)[!-~]*[A-Za-z0-9/_\-=#&%+~*@$]"
    rf"|(?<![\w.@])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{_TLDS})/{_URL_TAIL}"
)

_PATTERN = "|".join(
    f"(?:{p})"
    for p in (
        _URL,
        _EMOJI,
        r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?<!\.)",  # e-mail address
        rf"[@#\uff03\uff20]{_W}+",  # mention / hashtag (keep the sigil)
        r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);",  # HTML entity, as Twitter escapes &<>
        r"(?:[A-Za-z]\.){2,}(?![A-Za-z])",  # abbreviations: U.S., e.g., a.m.
        r"[$€£¥₹]\d+(?:[.,]\d+)*(?:[kKmMbB](?!\w))?",  # money: $20, $3.5M
        r"\d+(?:[.,:/]\d+)+%?|\d+%",  # 3.5, 10:30, 1,000, 12/25, 50%
        # Words keep inner hyphens and apostrophes (e-mail, don't, I'm: WNUT keeps
        # those contractions whole) and "&" between capitals, raw or as Twitter
        # escapes it (AT&T, AT&amp;T). A final 's is its own word, as in WNUT (which
        # never attaches it): "Obama's" must tag and trend as "Obama".
        rf"{_W}+(?:['’](?![sS](?!{_W})){_W}+|-{_W}+|(?<=[A-Z])&(?:amp;)?[A-Z]+(?![\w;]))*",
        rf"['’][sS](?!{_W})",
        r"[:;=][-'^o]?[)(\]\[DPpO/\\|*3](?!\w)|</?3|-_-|\^_\^|[oO]_[oO]",  # emoticons
        r"\.{2,}|[!?]{2,}|-{2,}|_{2,}|\*{2,}|~{2,}",  # "...", "!!!" and friends stay whole
        rf"[^{_SEP}][{_MARKS}]*",  # any other visible character, with its marks
    )
)
_WORD_RE = re.compile(_PATTERN)


_CHUNK_RE = re.compile(r"\S+")
# Characters that, trailing an alphanumeric run, always form a word of their own.
_LONE_TRAILERS = frozenset(".,!?:;\"')]…“”’")

# A frozen dataclass's __init__ routes every field through object.__setattr__, which
# made constructing words a third of the splitter's run time. Words built here take
# values straight from regex matches, so the slot descriptors are set directly.
_new_word = object.__new__
_set_text = Word.text.__set__  # type: ignore[attr-defined]
_set_start = Word.start.__set__  # type: ignore[attr-defined]
_set_end = Word.end.__set__  # type: ignore[attr-defined]


def _word(text: str, start: int, end: int) -> Word:
    w = _new_word(Word)
    _set_text(w, text)
    _set_start(w, start)
    _set_end(w, end)
    return w


def split_words(text: str) -> list[Word]:
    """Split a tweet into words; ``text[w.start:w.end] == w.text`` for every word."""
    words: list[Word] = []
    append = words.append
    for chunk in _CHUNK_RE.finditer(text):
        token = chunk.group()
        start = chunk.start()
        # Fast paths for the shapes that make up ~90% of tweet tokens. None of the
        # full pattern's alternatives can split these differently (the tests check
        # equivalence with _split_words_reference on real tweets).
        head = token[1:] if token[0] in "@#" else token
        if head.isalnum():  # word, @mention, #hashtag
            append(_word(token, start, chunk.end()))
        elif token[-1] in _LONE_TRAILERS and head[:-1].isalnum():  # "word," "@user:"
            end = chunk.end() - 1
            append(_word(token[:-1], start, end))
            append(_word(token[-1], end, end + 1))
        else:
            # pos/endpos keep offsets absolute and let lookbehinds see the real context.
            for m in _WORD_RE.finditer(text, start, chunk.end()):
                append(_word(m.group(), m.start(), m.end()))
    return words


def _split_words_reference(text: str) -> list[Word]:
    """Single-pass equivalent of split_words, kept for tests of the fast path."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD_RE.finditer(text)]


def words_from_pretokenized(line: str) -> list[Word]:
    """Words of a line whose tokens are joined by single spaces (e.g. CoNLL text)."""
    words: list[Word] = []
    start = 0
    for token in line.split(" "):
        if token:  # doubled spaces would otherwise yield empty words
            words.append(Word(token, start, start + len(token)))
        start += len(token) + 1
    return words
