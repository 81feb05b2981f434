"""Extra-network tags: the webui's matching and removal, our stricter checks."""

import pytest

from hypernet import PromptError
from hypernet.prompt import closest_names, extract_networks, extract_networks_pair, find_tags

SEED_PROMPT = (
    "detailed face, a beautiful woman, explorer in forest, white top, short brown pants, hat, sky background, "
    "realism, small breast <hypernet:incaseStyle_incaseAnythingV3:1>"
)

# (prompt, text the webui sends on, networks)
CASES = [
    ("a cat <hypernet:x:0.6>, sitting", "a cat , sitting", [("hypernet", "x", 0.6)]),
    ("<hypernet:x>", "", [("hypernet", "x", 1.0)]),
    ("<hypernet:x:-0.5>", "", [("hypernet", "x", -0.5)]),
    ("<hypernet:x:2>", "", [("hypernet", "x", 2.0)]),
    ("<hypernet:x:0>", "", [("hypernet", "x", 0.0)]),
    ("<hypernet:x:.5>", "", [("hypernet", "x", 0.5)]),
    ("<hypernet:x:1e-1>", "", [("hypernet", "x", 0.1)]),
    ("<hypernet:x: 0.5 >", "", [("hypernet", "x", 0.5)]),
    ("<hypernet:x:1_0>", "", [("hypernet", "x", 10.0)]),  # Python's float() reads it; so does the webui
    ("<hypernet: x >", "", [("hypernet", "x", 1.0)]),  # stripped (the webui would look up ' x ')
    ("<hypernet:foo bar:1>", "", [("hypernet", "foo bar", 1.0)]),
    ("<hypernet:x:1:extra>", "", [("hypernet", "x", 1.0)]),
    ("<hypernet:x:1:>", "", [("hypernet", "x", 1.0)]),
    ("<hypernet:名前_1:0.5>", "", [("hypernet", "名前_1", 0.5)]),
    ("<hypernet:ünïcödé-v2.1:0.8>", "", [("hypernet", "ünïcödé-v2.1", 0.8)]),
    ("<hypernet:x=y>", "", [("hypernet", "x=y", 1.0)]),
    ("<lora:y:0.7>", "", [("lora", "y", 0.7)]),
    ("<lyco:y:0.7>", "", [("lora", "y", 0.7)]),
    ("<hypernet:x> <lora:x>", " ", [("hypernet", "x", 1.0), ("lora", "x", 1.0)]),
    ("<lora:b><hypernet:a>", "", [("lora", "b", 1.0), ("hypernet", "a", 1.0)]),
    ("a <hypernet:x:1> b <hypernet:y:0.5> c", "a  b  c", [("hypernet", "x", 1.0), ("hypernet", "y", 0.5)]),
    ("<hypernet:x:1>\n<lora:z>", "\n", [("hypernet", "x", 1.0), ("lora", "z", 1.0)]),
    ("<<hypernet:x>>", "<>", [("hypernet", "x", 1.0)]),
    ("<hypernet:na>me>", "me>", [("hypernet", "na", 1.0)]),
    ("(<hypernet:x>:1.2)", "(:1.2)", [("hypernet", "x", 1.0)]),
    ("[<hypernet:x>:<lora:y>:5]", "[::5]", [("hypernet", "x", 1.0), ("lora", "y", 1.0)]),
    # Not tags: left in the text, as the webui leaves them.
    ("<hypernet:>", "<hypernet:>", []),
    ("<hyper-net:x>", "<hyper-net:x>", []),
    ("<hypernet x>", "<hypernet x>", []),
    ("< hypernet:x>", "< hypernet:x>", []),
    ("<hypernet:x", "<hypernet:x", []),
    ("a > b < c", "a > b < c", []),
    ("", "", []),
    (SEED_PROMPT, SEED_PROMPT[: SEED_PROMPT.index("<")], [("hypernet", "incaseStyle_incaseAnythingV3", 1.0)]),
]


@pytest.mark.parametrize(("text", "remaining", "networks"), CASES, ids=[repr(case[0][:40]) for case in CASES])
def test_extraction(text, remaining, networks):
    result_text, result_networks = extract_networks(text)
    assert result_text == remaining
    assert result_networks == networks
    assert all(type(network.multiplier) is float for network in result_networks)


# (prompt, error position, words the message must contain)
ERRORS = [
    ("a <hypernet:x:abc>", 2, ["'abc'", "not a number"]),
    ("<hypernet:x:>", 0, ["''", "not a number"]),
    ("<hypernet:x:nan>", 0, ["not a number"]),
    ("<hypernet:x:inf>", 0, ["not a number"]),
    ("<hypernet:x:-infinity>", 0, ["not a number"]),
    ("<hypernet::1>", 0, ["name is empty"]),
    ("<hypernet: :1>", 0, ["name is empty"]),
    ("x <foo:bar>", 2, ["unknown network type 'foo'", "hypernet, lora"]),
    ("<HYPERNET:x>", 0, ["unknown network type 'HYPERNET'", "did you mean 'hypernet'"]),
    ("<Lora:x>", 0, ["did you mean 'lora'"]),
    ("<ハイパー:x>", 0, ["unknown network type"]),
    ("<hypernet:x> <hypernet:x:0.5>", 13, ["tagged twice", "position 0", "position 13"]),
    ("<hypernet:x> <hypernet: x >", 13, ["tagged twice"]),
    ("<hypernet:x:1> <hypernet:x:1>", 15, ["tagged twice"]),
    ("<lora:x> <lyco:x>", 9, ["tagged twice"]),
    ("<lora:x:1:0.5>", 0, ["not supported"]),
    ("<lora:x:te=1>", 0, ["named arguments"]),
]


@pytest.mark.parametrize(("text", "position", "words"), ERRORS, ids=[repr(case[0]) for case in ERRORS])
def test_errors_point_at_the_tag(text, position, words):
    with pytest.raises(PromptError) as caught:
        extract_networks(text)
    error = caught.value
    assert error.position == position
    assert error.text == text
    assert f"position {position}" in str(error)
    for word in words:
        assert word in str(error)


def test_pair_applies_negative_prompt_tags_too():
    text, negative, networks = extract_networks_pair("a <hypernet:x:0.5>", "b <hypernet:y>, ugly")
    assert (text, negative) == ("a ", "b , ugly")
    assert networks == [("hypernet", "x", 0.5), ("hypernet", "y", 1.0)]


def test_pair_counts_a_network_tagged_in_both_prompts_once():
    _, _, networks = extract_networks_pair("<hypernet:x:0.5> a", "<hypernet:x:0.5> b")
    assert networks == [("hypernet", "x", 0.5)]


def test_pair_refuses_different_multipliers_across_prompts():
    with pytest.raises(PromptError, match="negative prompt position 2") as caught:
        extract_networks_pair("<hypernet:x:0.5>", "a <hypernet:x:0.7>")
    assert caught.value.position == 2


def test_pair_still_refuses_duplicates_within_the_negative_prompt():
    with pytest.raises(PromptError, match="tagged twice"):
        extract_networks_pair("a", "<hypernet:x> <hypernet:x>")


def test_pair_remove_mode_ignores_negative_tags_even_bad_ones():
    assert extract_networks_pair("<hypernet:x>", "<foo:bar> <hypernet:y:abc> z", negative="remove") == (
        "",
        "  z",
        [("hypernet", "x", 1.0)],
    )


def test_pair_keep_mode_is_the_webui():
    assert extract_networks_pair("<hypernet:x>", "<hypernet:y> z", negative="keep") == (
        "",
        "<hypernet:y> z",
        [("hypernet", "x", 1.0)],
    )


def test_pair_rejects_an_unknown_mode():
    with pytest.raises(PromptError, match="apply, remove, keep"):
        extract_networks_pair("a", "b", negative="both")


def test_find_tags_reports_raw_arguments_and_spans():
    [tag] = find_tags("ab <hypernet: x :0.5:y> c")
    assert (tag.type, tag.args, tag.start, tag.end) == ("hypernet", (" x ", "0.5", "y"), 3, 23)
    assert tag.text == "<hypernet: x :0.5:y>"


@pytest.mark.parametrize(
    ("name", "available", "expected"),
    [
        ("incaseStyle", ["incaseStyle_v3", "other", "incase"], ["incaseStyle_v3", "incase"]),
        ("AnimeStyle", ["animestyle", "anime_style", "zzz"], ["animestyle", "anime_style"]),
        ("zzz", ["abc", "def"], []),
        ("x", [], []),
    ],
)
def test_closest_names(name, available, expected):
    assert closest_names(name, available) == expected
