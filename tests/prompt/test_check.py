"""check: warnings with positions for constructs that probably do not do what was meant."""

import pytest

from hypernet.prompt import PromptWarning, check

# (prompt, steps, [(position, code), ...]) — positions are in the text as given.
CASES = [
    ("", None, []),
    ("a cat, (masterpiece:1.2), [cat:dog:0.5], [a|b] <hypernet:x:0.8>", 20, []),
    ("(a", None, [(0, "unclosed-bracket")]),
    ("a [b", None, [(2, "unclosed-bracket")]),
    ("a]", None, [(1, "unmatched-close")]),
    ("a)", None, [(1, "unmatched-close")]),
    ("(x:abc)", None, [(2, "weight-not-a-number")]),
    ("(x:1.2.3)", None, [(2, "weight-not-a-number")]),
    ("x:1.5)", None, [(1, "weight-without-bracket")]),
    ("([a)]", None, [(3, "crossed-brackets")]),
    ("(a BREAK b)", None, [(3, "break-in-brackets")]),
    ("a BREAK b", None, []),
    ("a \\b", None, [(2, "dropped-backslash")]),
    ("a \\(b\\)", None, []),
    ("[a:b:c]", None, [(0, "not-editing-when")]),
    ("x [a:b:1:2]", None, [(2, "not-editing-colons")]),
    ("(a:b:c)", None, [(0, "not-editing-paren"), (2, "weight-not-a-number")]),
    ("[a|b:3]", None, [(2, "not-parsed")]),
    ("[a:b:5] a|b", None, [(9, "not-parsed")]),
    ("[a:b:5] x\\", None, [(9, "dropped-backslash"), (9, "not-parsed")]),
    ("[a:1]]", None, [(0, "webui-ambiguous"), (5, "unmatched-close")]),
    ("[a:b:30]", 20, [(0, "edit-never")]),
    ("[a:b:30]", 40, []),
    ("[a:b:20]", 20, [(0, "edit-never")]),
    ("[a:b:19]", 20, []),
    ("[a:b:1.0]", None, [(0, "edit-never")]),
    ("[a:b:0]", None, [(0, "edit-always")]),
    ("[a:b:0]", 20, [(0, "edit-always")]),
    ("[a:b:0.01]", 20, [(0, "edit-always")]),
    ("[a:b:0.5]", None, []),
    ("<hypernet:x:abc>", None, [(0, "tag-multiplier")]),
    ("a <foo:bar>", None, [(2, "tag-type")]),
    ("<hypernet: :1>", None, [(0, "tag-name")]),
    ("<lora:x:1:2>", None, [(0, "tag-lora-args")]),
    ("<hypernet: x >", None, [(0, "tag-name-spaces")]),
    ("<hypernet:x:1:2>", None, [(0, "tag-extra-args")]),
    ("<hypernet:x> <hypernet:x:2>", None, [(13, "tag-duplicate")]),
    ("a <hypernet:> b", None, [(2, "not-a-tag")]),
    ("<hyper-net:x>", None, [(0, "not-a-tag")]),
    ("a <3 b", None, []),
    ("a cat # a comment\nb", None, [(6, "comment")]),
    # Positions after a removed tag still point into the original text.
    ("<hypernet:x> (a", None, [(13, "unclosed-bracket")]),
    ("<lora:y>[a:b:c]", None, [(8, "not-editing-when")]),
    # Problems inside an edit's 'from' or 'to' part are found too.
    ("[(a):b:3]", None, []),
    ("[(x:abc):b:3]", None, [(3, "weight-not-a-number")]),
    ("[a|(x:abc)]", None, [(5, "weight-not-a-number")]),
    ("[a:[b:3]", None, [(0, "unclosed-bracket")]),
    # A broken bracket inside an edit or alternation spoils the construct itself.
    ("[(a:b:3]", None, [(1, "unclosed-bracket"), (7, "crossed-brackets")]),
    ("[a|(b]", None, [(2, "not-parsed"), (3, "unclosed-bracket"), (5, "crossed-brackets")]),
    ("[(a:b:c):x:3]", None, [(0, "not-editing-inner"), (1, "not-editing-paren"), (3, "weight-not-a-number")]),
]


@pytest.mark.parametrize(("text", "steps", "expected"), CASES, ids=[f"{case[0]!r}@{case[1]}" for case in CASES])
def test_warnings(text, steps, expected):
    warnings = check(text, steps)
    assert [(warning.position, warning.code) for warning in warnings] == expected
    assert all(isinstance(warning, PromptWarning) and warning.message for warning in warnings)


def test_warning_text_names_the_position():
    [warning] = check("a (b")
    assert str(warning).startswith("position 2: ")
    assert "×1.1" in warning.message


def test_check_does_not_change_the_readings():
    text = "[a:1]] (x:abc <foo:bar>"
    from hypernet.prompt import parse_emphasis, schedule

    before = (parse_emphasis(text), schedule(text, 10))
    check(text, 10)
    assert (parse_emphasis(text), schedule(text, 10)) == before
