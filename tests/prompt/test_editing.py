"""schedule: prompt editing and alternation exactly as the webui v1.10.1 schedules them."""

import pytest

from hypernet import PromptError
from hypernet.prompt import schedule
from hypernet.prompt.editing import read, webui_ambiguous


def alternating(steps, *texts):
    return [(step, texts[(step - 1) % len(texts)]) for step in range(1, steps + 1)]


# (prompt, steps, expected schedule)
CASES = [
    # The webui's own documented examples.
    ("test", 10, [(10, "test")]),
    ("a [b:3]", 10, [(3, "a "), (10, "a b")]),
    ("a [b: 3]", 10, [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", 10, [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", 10, [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", 10, [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", 10, [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", 10, [(10, "a [unbalanced")]),
    ("a [b:.5] c", 10, [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", 10, [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", 10, alternating(10, "a", "(b:1.1)")),
    ("[fe|]male", 10, alternating(10, "female", "male")),
    ("[fe|||]male", 10, alternating(10, "female", "male", "male", "male")),
    # The step: a whole number is a step, a number with '.' a fraction of the steps.
    ("[cat:dog:0.5]", 20, [(10, "cat"), (20, "dog")]),
    ("[cat:dog:5]", 20, [(5, "cat"), (20, "dog")]),
    ("[cat::5]", 10, [(5, "cat"), (10, "")]),
    ("[cat:dog:1]", 10, [(1, "cat"), (10, "dog")]),
    ("[cat:dog:0]", 10, [(10, "dog")]),
    ("[cat:dog:-3]", 10, [(10, "dog")]),
    ("[cat:dog:30]", 10, [(10, "cat")]),
    ("[cat:dog:1.0]", 10, [(10, "cat")]),
    ("[cat:dog:2.]", 10, [(10, "cat")]),
    ("[cat:dog:.05]", 10, [(10, "dog")]),
    ("[cat:dog:0.29]", 100, [(28, "cat"), (100, "dog")]),  # 0.29 * 100 = 28.999999999999996
    ("[cat:dog:1e1]", 20, [(10, "cat"), (20, "dog")]),
    ("[cat:dog:7.5e-1]", 20, [(15, "cat"), (20, "dog")]),
    ("[cat:dog:+2]", 10, [(2, "cat"), (10, "dog")]),
    ("[cat:dog:1e400]", 20, [(20, "cat")]),  # the webui crashes (OverflowError) here
    ("[cat:dog:5]", 1, [(1, "cat")]),
    ("[cat:dog: 3 ]", 10, [(3, "cat"), (10, "dog")]),
    ("[cat:dog:\t3\n]", 10, [(3, "cat"), (10, "dog")]),
    ("[a: 3 ]", 10, [(3, ""), (10, "a")]),
    ("[ a : b :3]", 10, [(3, " a "), (10, " b ")]),
    ("[:1]", 10, [(1, ""), (10, "")]),
    ("[::2]", 10, [(2, ""), (10, "")]),
    ("[a:(b:1.5):2]", 10, [(2, "a"), (10, "(b:1.5)")]),
    ("(a:[b:c:2])", 10, [(2, "(a:b)"), (10, "(a:c)")]),
    ("[a\\:b:2]", 10, [(2, ""), (10, "a\\:b")]),
    ("café [naïve:über:2] 名前", 10, [(2, "café naïve 名前"), (10, "café über 名前")]),
    ("[a:b:5] and [c:d:2]", 10, [(2, "a and c"), (5, "a and d"), (10, "b and d")]),
    ("[a:b:5][c:d:5]", 10, [(5, "ac"), (10, "bd")]),
    # Not editing: read as plain text (and emphasis brackets later).
    ("[a:b:c]", 10, [(10, "[a:b:c]")]),
    ("[a:b:1:2]", 10, [(10, "[a:b:1:2]")]),
    ("[a:b:2", 10, [(10, "[a:b:2")]),
    ("[a:b:1e]", 10, [(10, "[a:b:1e]")]),
    ("[a:b:1.5.2]", 10, [(10, "[a:b:1.5.2]")]),
    ("[a:b:- 2]", 10, [(10, "[a:b:- 2]")]),
    ("[a:b:２]", 10, [(10, "[a:b:２]")]),  # only ASCII digits make a step
    ("[a:b:(2)]", 10, [(10, "[a:b:(2)]")]),
    ("(a:b:2)", 10, [(10, "(a:b:2)")]),
    ("\\[a:b:2\\]", 10, [(10, "\\[a:b:2\\]")]),
    ("[]", 10, [(10, "[]")]),
    ("", 10, [(10, "")]),
    ("[(a:2]:3]", 10, [(10, "[(a:2]:3]")]),
    # Alternation.
    ("[a|b|c]", 4, [(1, "a"), (2, "b"), (3, "c"), (4, "a")]),
    ("[a|b]", 1, [(1, "a")]),
    ("[|a]", 2, [(1, ""), (2, "a")]),
    ("[a|b] [c:d:2]", 3, [(1, "a c"), (2, "b c"), (3, "a d")]),
    ("[[a|b]|c]", 4, [(1, "a"), (2, "c"), (3, "a"), (4, "c")]),
    ("[a|[b:c:2]]", 3, [(1, "a"), (2, "b"), (3, "a")]),
    ("[[a|b]:[c|d]:2]", 4, [(1, "a"), (2, "b"), (3, "c"), (4, "d")]),
    ("([a|b]:1.2)", 2, [(1, "(a:1.2)"), (2, "(b:1.2)")]),
    ("[[a:b:1]|c]", 3, [(1, "a"), (2, "c"), (3, "b")]),
    # A '|' that no alternation can hold, or a dangling backslash: the whole prompt literally.
    ("a|b", 10, [(10, "a|b")]),
    ("a\\|b", 10, [(10, "a\\|b")]),
    ("[a:b:5] x|y", 10, [(10, "[a:b:5] x|y")]),
    ("[a|b:3]", 10, [(10, "[a|b:3]")]),
    ("(a|b)", 10, [(10, "(a|b)")]),
    ("[(a|b)|c]", 10, [(10, "[(a|b)|c]")]),
    ("[a:b:5] \\", 10, [(10, "[a:b:5] \\")]),
    ("[a:b:5] \\\nc", 10, [(10, "[a:b:5] \\\nc")]),
    ("[a:b:5] \\\\", 10, [(5, "a \\\\"), (10, "b \\\\")]),
    # Loose brackets and colons stay as they are; constructs after them still count.
    ("[[a:1]", 10, [(1, "["), (10, "[a")]),
    ("([a:1]", 10, [(1, "("), (10, "(a")]),
    (":[a:1]", 10, [(1, ":"), (10, ":a")]),
    ("[a:1] ]", 10, [(1, " ]"), (10, "a ]")]),
    ("[a:1]x]", 10, [(1, "x]"), (10, "ax]")]),
    ("[a|b]]", 2, [(1, "a]"), (2, "b]")]),
    ("[x:[c:a:30][y:1e1]:0]", 20, [(10, "c"), (20, "cy")]),
    # The webui's reading of these depends on its hash seed; we always keep the edit.
    ("[a:1]]", 10, [(1, "]"), (10, "a]")]),
    ("[a:1]:", 10, [(1, ":"), (10, "a:")]),
    ("[a:1]((", 10, [(1, "(("), (10, "a((")]),
    ("[[y:1]:2]]", 10, [(1, "]"), (2, "]"), (10, "y]")]),
]


@pytest.mark.parametrize(("text", "steps", "expected"), CASES, ids=[f"{case[0]!r}@{case[1]}" for case in CASES])
def test_schedule(text, steps, expected):
    assert schedule(text, steps) == expected


@pytest.mark.parametrize(
    ("text", "ambiguous"),
    [
        ("[a:1]]", ["[a:1]"]),
        ("[a:1]:x", ["[a:1]"]),
        ("()[::1][])", ["[::1]"]),
        ("(x[a:1])]", ["[a:1]"]),
        ("[a:1] ]", []),
        ("[a:1]x]", []),
        ("[a|b]]", []),
        ("[[a:1]", []),
        ("[a:1]([b:2])", []),
    ],
)
def test_readings_the_webui_does_not_settle(text, ambiguous):
    reading = read(text)
    assert [text[item.start : item.end] for item in webui_ambiguous(reading)] == ambiguous


def test_schedule_entries_are_ordered_and_end_at_steps():
    result = schedule("[a:b:3] [c|d] [e:f:0.5]", 12)
    steps = [until for until, _ in result]
    assert steps == sorted(set(steps)) and steps[-1] == 12 and steps[0] >= 1


def test_identical_neighbouring_texts_are_kept_like_the_webui():
    # An edit inside an alternative that is not shown still adds its step.
    assert schedule("[[a:b:3]|c]", 1) == [(1, "a")]
    assert schedule("[a:a:3]", 10) == [(3, "a"), (10, "a")]


@pytest.mark.parametrize("steps", [0, -1, 1.5, "10", True, None])
def test_steps_must_be_a_positive_whole_number(steps):
    with pytest.raises(PromptError, match="steps"):
        schedule("a", steps)


def test_deep_nesting_does_not_hit_the_recursion_limit():
    depth = 5000
    text = "[" * depth + "a:b:2" + "]" * depth
    result = schedule(text, 3)
    assert result[-1][0] == 3
    assert schedule("(" * depth + "[a|b]" + ")" * depth, 2)[1][1] == "(" * depth + "b" + ")" * depth
