"""Comments and AND: the two webui steps around tags, editing and emphasis."""

import pytest

from hypernet.prompt import split_and, strip_comments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no comment", "no comment"),
        ("a # b", "a \n"),
        ("# c\na", "\na"),
        ("a\n# c\nb", "a\nb"),
        ("a#b\nc", "a\nc"),
        ("#", "\n"),
        ("a (x:1.2) # weights\n[b|c]", "a (x:1.2) \n[b|c]"),
    ],
)
def test_strip_comments(text, expected):
    assert strip_comments(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat", [("a cat", 1.0)]),
        ("a cat ", [("a cat", 1.0)]),
        ("a cat:1.5", [("a cat", 1.5)]),
        ("a cat : 1.5 ", [("a cat", 1.5)]),
        ("a cat:-1", [("a cat", -1.0)]),
        ("a cat:.5", [("a cat", 0.5)]),
        ("a cat:5.", [("a cat", 5.0)]),
        ("a cat:1e3", [("a cat:1e3", 1.0)]),
        ("a:b:0.5", [("a:b", 0.5)]),
        ("[a:b:0.5]", [("[a:b:0.5]", 1.0)]),
        ("(x:1.2)", [("(x:1.2)", 1.0)]),
        ("a\n:2", [("a", 2.0)]),
        ("a AND b", [("a", 1.0), (" b", 1.0)]),
        ("a:2 AND b:0.5", [("a", 2.0), (" b", 0.5)]),
        ("ANDROID AND", [("ANDROID", 1.0), ("", 1.0)]),
        ("a and b", [("a and b", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_split_and(text, expected):
    assert split_and(text) == expected
