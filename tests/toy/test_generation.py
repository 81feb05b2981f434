import pytest
"""The acceptance measurement: pictures of combinations no training caption named."""

from hypernet.toy import evaluate, world


pytestmark = pytest.mark.needs_toy_model

def test_held_out_prompts_cover_only_held_out_combinations():
    pairs = evaluate.held_out_prompts(60)
    assert len(pairs) == 60
    assert {combination for _, combination in pairs} == set(world.held_out_combinations())
    for prompt, (shape, colour, background) in pairs:
        assert world.is_held_out(shape, colour, background) and prompt == world.plain_prompt(shape, colour, background)


def test_judge_finds_the_asked_shape_and_colour_in_held_out_combinations(toy_pipeline, toy_judge):
    accuracy = evaluate.generation_accuracy(toy_pipeline, toy_judge, count=60, seed=0)
    assert accuracy["shape+colour"] >= 0.8, accuracy
    assert accuracy["background"] >= 0.8, accuracy
