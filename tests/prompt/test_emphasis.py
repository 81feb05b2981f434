"""parse_emphasis: the webui's (text, weight) segments, float for float."""

import pytest

from hypernet.prompt import parse_emphasis

UP = 1.1
DOWN = 1 / 1.1

# (prompt, expected segments). Weights are written as the products the webui computes,
# in its order (innermost closer first), so equality is exact.
CASES = [
    ("", [("", 1.0)]),
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", UP), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", UP)]),
    ("[unbalanced", [("unbalanced", DOWN)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", UP)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.3 * UP * UP),
            (" ", UP),
            ("on", UP * DOWN),
            (" a ", UP),
            ("hill", 0.5 * UP),
            (", sun, ", UP),
            ("sky", UP * UP * UP * UP),
            (".", UP),
        ],
    ),
    ("((x))", [("x", 1.2100000000000002)]),
    ("[x]", [("x", 0.9090909090909091)]),
    ("[[x]]", [("x", DOWN * DOWN)]),
    ("(x:1.5)", [("x", 1.5)]),
    ("(x: 1.5 )", [("x", 1.5)]),
    ("(x:-1)", [("x", -1.0)]),
    ("(x:+.5)", [("x", 0.5)]),
    ("(x:2.)", [("x", 2.0)]),
    ("(x:0)", [("x", 0.0)]),
    ("(x:1.5) y", [("x", 1.5), (" y", 1.0)]),
    ("((x:1.5))", [("x", 1.5 * UP)]),
    ("(x:abc)", [("x:abc", UP)]),
    ("(x:1.2.3)", [("x:1.2.3", UP)]),  # the webui raises ValueError here (see docs)
    ("(x:.)", [("x:.", UP)]),
    ("x:1.5)", [("x:1.5)", 1.0)]),
    (")x]", [(")x]", 1.0)]),
    ("a:b", [("a:b", 1.0)]),
    ("(:1.5)", [("", 1.0)]),
    ("()", [("", 1.0)]),
    ("(\\", [("", UP)]),
    ("a \\b", [("a b", 1.0)]),
    ("\\\\", [("\\", 1.0)]),
    ("\\\\(x)", [("\\", 1.0), ("x", UP)]),
    ("\\", [("", 1.0)]),
    ("([a)]", [("a", UP * DOWN)]),
    ("[(a]", [("a", DOWN * UP)]),
    ("(a[b", [("a", UP), ("b", UP * DOWN)]),
    ("[a(b", [("a", DOWN), ("b", UP * DOWN)]),
    ("(((a) b) c)", [("a", UP * UP * UP), (" b", UP * UP), (" c", UP)]),
    ("(a)(b:1.1)", [("ab", UP)]),
    ("(a:1.2) (b:1.2)", [("a", 1.2), (" ", 1.0), ("b", 1.2)]),
    ("[a:b:0.5]", [("a:b:0.5", DOWN)]),
    ("café (naïve) 名前", [("café ", 1.0), ("naïve", UP), (" 名前", 1.0)]),
    ("(x:１.５)", [("x", 1.5)]),  # Unicode digits: the pattern's \d and float() both accept them
    ("a BREAK b", [("a", 1.0), ("BREAK", -1), ("b", 1.0)]),
    ("BREAK", [("", 1.0), ("BREAK", -1), ("", 1.0)]),
    ("a\nBREAK\nb", [("a", 1.0), ("BREAK", -1), ("b", 1.0)]),
    ("aBREAKb", [("aBREAKb", 1.0)]),
    ("a BREAKb", [("a BREAKb", 1.0)]),
    ("a break b", [("a break b", 1.0)]),
    ("a BREAK BREAK b", [("a", 1.0), ("BREAK", -1), ("", 1.0), ("BREAK", -1), ("b", 1.0)]),
    ("(a BREAK b)", [("a", UP), ("BREAK", -1 * UP), ("b", UP)]),
    ("(a) BREAK (b)", [("a", UP), ("", 1.0), ("BREAK", -1), ("", 1.0), ("b", UP)]),
    ("a, BREAK, b", [("a,", 1.0), ("BREAK", -1), (", b", 1.0)]),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(case[0]) for case in CASES])
def test_segments_and_weights(text, expected):
    result = parse_emphasis(text)
    assert result == expected
    assert all(isinstance(segment, tuple) and len(segment) == 2 for segment in result)


def test_break_marker_keeps_the_integer_weight():
    marker = parse_emphasis("a BREAK b")[1]
    assert marker == ("BREAK", -1) and type(marker[1]) is int


def test_weights_are_exact_float_products():
    # (x) inside ((…)) multiplies 1.1 twice: the float result is not 1.21.
    assert parse_emphasis("((x))")[0][1] != 1.21
    assert parse_emphasis("a (((house:1.3)) b")[1] == ("house", 1.5730000000000004)
