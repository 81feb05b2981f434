"""Prompt editing in the hires fix's second pass, as the webui v1.10.1 schedules it."""

from hypernet.prompt.editing import schedule


def test_first_pass_unchanged_and_fractions_above_one_wait_for_the_second_pass():
    assert schedule("[a:b:0.5]", 10) == [(5, "a"), (10, "b")]
    assert schedule("[a:b:1.5]", 10) == [(10, "a")]  # never switches in the first pass


def test_second_pass_counts_on_from_the_first():
    # fraction: (1.5 - 1) x hires steps; step number: n - first-pass steps
    assert schedule("[a:b:1.5]", 8, first_pass_steps=10) == [(4, "a"), (8, "b")]
    assert schedule("[a:b:13]", 8, first_pass_steps=10) == [(3, "a"), (8, "b")]
    assert schedule("[a:b:0.5]", 8, first_pass_steps=10) == [(8, "b")]  # already past: the "to" text throughout
    assert schedule("[a:b:5]", 8, first_pass_steps=10) == [(8, "b")]
