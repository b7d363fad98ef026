"""Tweet word splitting: surface forms, offsets, and the invariants the model relies on."""
from __future__ import annotations

import dataclasses
import random
import unicodedata
from pathlib import Path

import pytest

from tagger.words import Word, _split_words_reference, split_words, words_from_pretokenized


def texts(s: str) -> list[str]:
    return [w.text for w in split_words(s)]


def assert_offsets(s: str, words: list[Word]) -> None:
    for w in words:
        assert s[w.start : w.end] == w.text, (s, w)
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(a.end <= b.start for a, b in zip(words, words[1:]))


def dropped_chars(s: str, words: list[Word]) -> list[str]:
    """Characters of ``s`` covered by no word that are neither whitespace nor invisible."""
    covered = set()
    for w in words:
        covered.update(range(w.start, w.end))
    return [
        c
        for i, c in enumerate(s)
        if i not in covered and not c.isspace() and unicodedata.category(c) not in ("Cf", "Cc") and c != "\u2800"
    ]


@pytest.mark.parametrize("s", ["", " ", "\t\n  \r\n", "\u00a0\u3000\u2003", "\u200b\u2063\ufeff \u2060"])
def test_empty_and_blank_text_gives_no_words(s: str) -> None:
    assert split_words(s) == []


def test_offsets_and_value_semantics() -> None:
    s = "  Hello,  world!"
    assert split_words(s) == [Word("Hello", 2, 7), Word(",", 7, 8), Word("world", 10, 15), Word("!", 15, 16)]
    w = split_words(s)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.text = "x"  # type: ignore[misc]
    assert hash(w) == hash(Word("Hello", 2, 7))


@pytest.mark.parametrize(
    "s, expected",
    [
        ("(see https://t.co/abc).", ["(", "see", "https://t.co/abc", ")", "."]),
        ("read http://example.com/a?b=1&c=2, then", ["read", "http://example.com/a?b=1&c=2", ",", "then"]),
        ("at www.foo.com/x!", ["at", "www.foo.com/x", "!"]),
        ("via t.co/AbC12 and bit.ly/xy.", ["via", "t.co/AbC12", "and", "bit.ly/xy", "."]),
        ("truncated https://t.co/Zk3ah0a…", ["truncated", "https://t.co/Zk3ah0a", "…"]),
        ('"https://t.co/q"', ['"', "https://t.co/q", '"']),
    ],
)
def test_urls_are_single_words_without_trailing_punctuation(s: str, expected: list[str]) -> None:
    assert texts(s) == expected


def test_mentions_hashtags_and_email() -> None:
    assert texts("RT @user_1: #NowPlaying #1 ＃東京 mail me@x.co.uk!") == [
        "RT", "@user_1", ":", "#NowPlaying", "#1", "＃東京", "mail", "me@x.co.uk", "!",
    ]  # fmt: skip
    assert texts("@ # alone") == ["@", "#", "alone"]


@pytest.mark.parametrize(
    "s, expected",
    [
        ("U.S. e.g. a.m.", ["U.S.", "e.g.", "a.m."]),
        ("3.5 10:30am $20 $3.5M 1,000 50% 12/25/2016", ["3.5", "10:30", "am", "$20", "$3.5M", "1,000", "50%", "12/25/2016"]),
        ("e-mail co-founder foo--bar", ["e-mail", "co-founder", "foo", "--", "bar"]),
        ("don't I'm rock'n'roll students' 'RT", ["don't", "I'm", "rock'n'roll", "students", "'", "'", "RT"]),
        ("Obama's it’s IT'S 'sup Lets", ["Obama", "'s", "it", "’s", "IT", "'S", "'", "sup", "Lets"]),  # WNUT splits 's
        ("you &amp; me &lt;3 &#39;hi&#x27;", ["you", "&amp;", "me", "&lt;", "3", "&#39;", "hi", "&#x27;"]),
        ("AT&T AT&amp;T A&amp;E Q&A glasses&amp;i", ["AT&T", "AT&amp;T", "A&amp;E", "Q&A", "glasses", "&amp;", "i"]),
        ("wait... what?!? yes!!! ok.", ["wait", "...", "what", "?!?", "yes", "!!!", "ok", "."]),
        (":) :D ;-) -_- <3 :(", [":)", ":D", ";-)", "-_-", "<3", ":("]),
    ],
)
def test_punctuation_numbers_and_abbreviations(s: str, expected: list[str]) -> None:
    assert texts(s) == expected


def test_emoji_are_their_own_words() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # ZWJ sequence
    thumbs = "\U0001f44d\U0001f3fd"  # skin-tone modifier
    flag = "\U0001f1fa\U0001f1f8"
    england = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"  # tag sequence
    heart = "\u2764\ufe0f"
    keycap = "1\ufe0f\u20e3"
    s = f"{family}hi{thumbs}there {flag}{flag} {england}{heart}😂😂 {keycap}"
    assert texts(s) == [family, "hi", thumbs, "there", flag, flag, england, heart, "😂", "😂", keycap]
    assert_offsets(s, split_words(s))


def test_emoji_only_tweet() -> None:
    s = "😭😭😭 🔥"
    assert split_words(s) == [Word("😭", 0, 1), Word("😭", 1, 2), Word("😭", 2, 3), Word("🔥", 4, 5)]


def test_invisible_characters_separate_and_never_appear_inside_words() -> None:
    s = "in\u2063side \u2063 between\u200bzero\u200cnon\u200djoin\ufeffbom\u2060wj\u00adsoft"
    words = split_words(s)
    assert [w.text for w in words] == ["in", "side", "between", "zero", "non", "join", "bom", "wj", "soft"]
    assert_offsets(s, words)
    invisible = {"\u200b", "\u200c", "\u200d", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064", "\ufeff", "\u00ad"}
    assert not any(set(w.text) & invisible for w in words)


def test_any_whitespace_separates() -> None:
    s = "a\u00a0b\u3000c\u2009d\u202fe\tf\ng\u2028h"
    assert texts(s) == list("abcdefgh")


@pytest.mark.parametrize(
    "s, expected",
    [
        ("हिन्दी भाषा, नमस्ते!", ["हिन्दी", "भाषा", ",", "नमस्ते", "!"]),  # vowel signs and virama stay
        ("العَرَبِيَّة، جميل", ["العَرَبِيَّة", "،", "جميل"]),
        ("Привет, мир!", ["Привет", ",", "мир", "!"]),
        ("東京に行きました。楽しい！", ["東京に行きました", "。", "楽しい", "！"]),
        ("Tokyo東京 Zürich naïve", ["Tokyo東京", "Zürich", "naïve"]),
        ("e\u0301te\u0301", ["e\u0301te\u0301"]),  # decomposed accents
    ],
)
def test_mixed_scripts(s: str, expected: list[str]) -> None:
    words = split_words(s)
    assert [w.text for w in words] == expected
    assert dropped_chars(s, words) == []


def test_long_tweet() -> None:
    s = ("Long thread 🧵 about #NLP at https://t.co/x1 — really, U.S. folks… " * 8).strip()
    assert len(s) > 280
    words = split_words(s)
    assert_offsets(s, words)
    assert dropped_chars(s, words) == []
    assert [w.text for w in words].count("https://t.co/x1") == 8


def test_fast_path_matches_single_pass_on_random_text() -> None:
    # The splitter short-cuts common token shapes; it must agree with the plain regex.
    alphabet = list("aZ9_ .,!?:;'\"()@#&$%-/…“’") + ["é", "न", "ि", "東", "😂", "\u200d", "\u2063", "\ufe0f", "\u00a0", "🏽"]
    rng = random.Random(0)
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        words = split_words(s)
        assert words == _split_words_reference(s), s
        assert_offsets(s, words)
        assert dropped_chars(s, words) == []


def test_words_from_pretokenized() -> None:
    line = "Disney world , @paul"
    assert words_from_pretokenized(line) == [Word("Disney", 0, 6), Word("world", 7, 12), Word(",", 13, 14), Word("@paul", 15, 20)]
    assert words_from_pretokenized("") == []
    line = "a  b"
    assert [(w.text, line[w.start : w.end]) for w in words_from_pretokenized(line)] == [("a", "a"), ("b", "b")]


def test_real_tweets_round_trip(shared_data: Path) -> None:
    files = sorted((shared_data / "tweets").glob("*.txt"))
    if not files:
        pytest.skip("no tweet files")
    n = 0
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            words = split_words(line)
            assert_offsets(line, words)
            assert dropped_chars(line, words) == [], line
            assert words == _split_words_reference(line), line
            n += 1
    assert n >= 30_000
