"""Property test: any text at all is read without an exception (tags may raise PromptError).

The 10,000-example test draws one seed per example and builds the prompt from it: half
the time a random string over an alphabet rich in syntax characters and words, half the
time a prompt built from real constructs (emphasis, weights, editing, alternation, tags,
BREAK) and then damaged by a few inserted or deleted characters. One draw per example
keeps hypothesis's own cost, and so the run, to seconds; a failure prints the seed, which
rebuilds the prompt exactly. A smaller test draws the strings through hypothesis itself,
so that a failure there shrinks to a minimal prompt.
"""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypernet import PromptError
from hypernet.prompt import check, extract_networks, extract_networks_pair, parse_emphasis, schedule

ALPHABET = "()[]:|<>\\ ,.0123456789-+eE\n\tabxé名#"
PIECES = [*ALPHABET, "BREAK", " BREAK ", "AND", "hypernet", "lora", "<hypernet:", "<lora:", "\\(", "\\|"]
WORDS = ["a", "cat", " ", "x y", ", ", "\\(", "\\|", "\\\\", "BREAK", " BREAK ", "AND", "é", "名前", ""]
NUMBERS = ["1", "0", "-1", "2", ".5", "0.5", "1.", "1e1", "1e400", " 3 ", "+2", "x", "", "1.2.3", "30"]
TYPES = ["hypernet", "lora", "lyco", "foo", "HYPERNET", "hyper-net"]


def random_prompt(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))


def structured_prompt(seed: int) -> str:
    rng = random.Random(seed)

    def build(depth):
        pieces = []
        for _ in range(rng.randint(0, 3)):
            choice = rng.random() if depth < 4 else 0.0
            if choice < 0.35:
                pieces.append(rng.choice(WORDS))
            elif choice < 0.45:
                pieces.append(f"({build(depth + 1)})")
            elif choice < 0.55:
                pieces.append(f"({build(depth + 1)}:{rng.choice(NUMBERS)})")
            elif choice < 0.62:
                pieces.append(f"[{build(depth + 1)}]")
            elif choice < 0.75:
                before = f"{build(depth + 1)}:" if rng.random() < 0.6 else ""
                pieces.append(f"[{before}{build(depth + 1)}:{rng.choice(NUMBERS)}]")
            elif choice < 0.87:
                pieces.append("[" + "|".join(build(depth + 1) for _ in range(rng.randint(2, 4))) + "]")
            else:
                args = [rng.choice(WORDS + ["name", " n "])] + [rng.choice(NUMBERS) for _ in range(rng.randint(0, 2))]
                pieces.append(f"<{rng.choice(TYPES)}:{':'.join(args)}>")
        return "".join(pieces)

    text = build(0)
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        if not text:
            break
        at = rng.randrange(len(text))
        if rng.random() < 0.5:
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + rng.choice("()[]:|\\<> 1") + text[at:]
    return text


def prompt_and_steps(seed: int):
    text = (random_prompt if seed % 2 else structured_prompt)(seed // 2)
    return text, seed % 40 + 1


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_any_prompt_is_read_without_exceptions(seed):
    text, steps = prompt_and_steps(seed)
    assert_read_without_exceptions(text, steps)


@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(text=st.text(alphabet=ALPHABET, max_size=40), steps=st.integers(1, 40))
def test_hypothesis_strings_are_read_without_exceptions(text, steps):
    assert_read_without_exceptions(text, steps)


def assert_read_without_exceptions(text, steps):
    segments = parse_emphasis(text)
    assert segments and all(isinstance(part, str) and isinstance(weight, (int, float)) for part, weight in segments)

    result = schedule(text, steps)
    untils = [until for until, _ in result]
    assert untils == sorted(set(untils)) and untils[-1] == steps and untils[0] >= 1
    assert all(isinstance(part, str) for _, part in result)

    try:
        stripped, networks = extract_networks(text)
    except PromptError as error:
        assert error.position is not None and 0 <= error.position < len(text)
    else:
        assert all(kind in ("hypernet", "lora") for kind, _, _ in networks)
        assert len(stripped) <= len(text)

    try:
        extract_networks_pair(text, text[::-1])
    except PromptError:
        pass

    for warning in check(text, steps):
        assert 0 <= warning.position <= len(text)


def test_the_generated_prompts_cover_the_constructs():
    sample = [prompt_and_steps(seed)[0] for seed in range(4000)]
    for fragment in ["|", "<hypernet:", "BREAK", ":1e400]", "\\(", "(", "["]:
        assert any(fragment in text for text in sample), fragment
    edited = sum(1 for text in sample if len(schedule(text, 10)) > 1)
    assert edited > 150  # plenty of prompts really schedule something
    tagged = sum(1 for text in sample if "<hypernet:" in text or "<lora:" in text)
    assert tagged > 400
