import pytest

from sink.normalize import normalize_entity


@pytest.mark.parametrize("surface, expected", [
    ("Disney World", "disney world"),
    ("disney world", "disney world"),
    ("#DisneyWorld", "disney world"),
    ("@DisneyWorld!", "disney world"),
    ('"#DisneyWorld"', "disney world"),
    ("  Disney\n  World ", "disney world"),
    ("#USOpen", "us open"),
    ("#new_york_city", "new york city"),
    ("#iPhone", "iphone"),        # lower-case start: not split
    ("#NASA", "nasa"),            # all caps: not split
    ("#COVID19", "covid19"),
    ("ＮＡＳＡ", "nasa"),          # NFKC folds full-width letters
    ("Straße", "strasse"),         # casefold, not lower
    ("Obama's", "obama"),
    ("(Paris)", "paris"),
    ("AT&T", "at&t"),             # inner punctuation is part of the name
    ("#", ""),
])
def test_normalize(surface, expected):
    assert normalize_entity(surface) == expected
