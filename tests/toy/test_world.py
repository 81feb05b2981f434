import re

import numpy as np
import pytest

from hypernet.errors import HypernetConfigError
from hypernet.toy import world


def test_same_seed_same_pictures_and_captions():
    first = world.sample(3, 8)
    second = world.sample(3, 8)
    for (image_a, caption_a, _), (image_b, caption_b, _) in zip(first, second):
        assert caption_a == caption_b
        assert np.array_equal(np.asarray(image_a), np.asarray(image_b))
    other = world.sample(4, 8)
    assert [c for _, c, _ in first] != [c for _, c, _ in other]


def test_world_has_the_promised_variety():
    assert len(world.SHAPES) >= 4 and len(world.COLOURS) >= 6 and len(world.BACKGROUNDS) >= 4
    assert not set(world.COLOURS) & set(world.BACKGROUNDS)
    scenes = list(world.scenes(0, 400))
    assert {s.shape for s in scenes} == set(world.SHAPES)
    assert {s.colour for s in scenes} == set(world.COLOURS)
    assert {s.background for s in scenes} == set(world.BACKGROUNDS)
    assert len({round(s.radius) for s in scenes}) > 8
    assert len({world.caption(s).split(" ")[0] for s in scenes}) > 3  # wording varies


def test_captions_name_what_is_drawn():
    for image, caption, scene in world.sample(5, 50):
        assert image.size == (64, 64) and image.mode == "RGB"
        assert scene.shape in caption and scene.colour in caption
        spellings = world.BACKGROUND_SPELLINGS.get(scene.background, (scene.background,))
        assert any(re.search(rf"\b{s}\b", caption) for s in spellings)
        # the shape's colour is really there: the centre pixel is close to it
        centre = np.asarray(image)[int(scene.center[1]), int(scene.center[0])].astype(int)
        assert np.abs(centre - np.array(world.COLOURS[scene.colour])).max() <= 14


def test_held_out_combinations_never_appear_in_training_draws():
    held_out = set(world.held_out_combinations())
    assert 12 <= len(held_out) <= 24
    seen = {(s.shape, s.colour, s.background) for s in world.scenes(0, 3000)}
    assert not seen & held_out
    # every pair of a held-out triple still occurs in training
    for shape, colour, background in held_out:
        assert any(s == shape and c == colour for s, c, _ in seen)
        assert any(c == colour and b == background for _, c, b in seen)
        assert any(s == shape and b == background for s, _, b in seen)


def test_styles_redraw_the_same_scene_differently():
    scene = next(world.scenes(1, 1))
    plain, water, neon = (np.asarray(world.draw(scene, style), dtype=float) for style in ("plain", "water", "neon"))
    assert np.abs(plain - water).mean() > 5 and np.abs(plain - neon).mean() > 5
    assert neon.mean() < plain.mean() or scene.background == "black"
    with pytest.raises(HypernetConfigError, match="valid styles"):
        world.draw(scene, "sepia")


def test_write_style_set_uses_the_trainer_layout(tmp_path):
    paths = world.write_style_set(tmp_path / "water", "water", count=30, seed=2)
    assert len(paths) == 30
    names = sorted(p.name for p in (tmp_path / "water").iterdir())
    assert names[:2] == ["000.png", "000.txt"] and names[-1] == "029.txt"
    caption = (tmp_path / "water" / "007.txt").read_text().strip()
    assert "background" in caption or " on " in caption
    with pytest.raises(HypernetConfigError):
        world.write_style_set(tmp_path / "x", "water", count=0)
