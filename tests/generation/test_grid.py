import numpy as np
import pytest

import hypernet
from hypernet import attention
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.library import Library
from hypernet.network import Hypernetwork
from hypernet.strength import strength_grid, with_multiplier
from tiny_models import SELF_SIZES, TEXT_WIDTH


def test_with_multiplier_replaces_or_appends_the_tag():
    assert with_multiplier("a cat", "x", 0.5) == "a cat <hypernet:x:0.5>"
    assert with_multiplier("a <hypernet:x:1> cat", "x", 0.25) == "a <hypernet:x:0.25> cat"
    assert with_multiplier("a <hypernet:y:1>", "x", 0) == "a <hypernet:y:1> <hypernet:x:0>"


def test_strength_grid_rows_columns_and_visible_effect(pipe, tmp_path):
    root = tmp_path / "lib"
    hypernet.save(Hypernetwork.create(sizes=[TEXT_WIDTH, *SELF_SIZES], weight_init="XavierNormal", generator_seed=1, name="s"), root / "s.pt")
    generator = Generator(pipe, library=Library(root), model=ModelInfo("tiny"))
    try:
        base = Request(prompt="a red circle", steps=2, sampler="DDIM", width=32, height=32)
        image, rows = strength_grid(generator, base, "s", [0, 0.5, 1], seeds=[1, 2], progress=False)
    finally:
        attention.uninstall(pipe.unet)
    assert len(rows) == 2 and all(len(row) == 3 for row in rows)
    assert [r.seed for r in rows[1]] == [2, 2, 2]
    zero, half, full = (np.asarray(r.image).astype(int) for r in rows[0])
    assert np.abs(full - zero).sum() > np.abs(half - zero).sum() > 0
    # cells are scaled up to at least 128 px, plus label margins
    assert image.width > 3 * 128 and image.height > 2 * 128
