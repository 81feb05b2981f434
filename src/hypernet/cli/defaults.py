"""What the faces (CLI, server, web UI) choose when the user names no model: the embedded
toy model. The library below them takes the model from its caller; only faces pick the
default, so only they import the `toy` package.

    from hypernet.cli.defaults import toy_model_loader
    generator = load_generator(None, hypernet_dir=..., default_model=toy_model_loader())
"""

from __future__ import annotations

from ..loading import DefaultModel, model_info

TOY_MODEL_NAME = "hypernet-toy"


def toy_model_loader() -> DefaultModel:
    """The embedded toy model as a `loading.DefaultModel` (named `hypernet-toy` in infotext)."""
    from ..generation import ModelInfo
    from ..toy.model import load_toy_pipeline, shipped_model_folder

    def info() -> ModelInfo:
        return ModelInfo(name=TOY_MODEL_NAME, hash=model_info(shipped_model_folder()).hash)

    return DefaultModel(load=lambda dtype: load_toy_pipeline(dtype=dtype), info=info)


def toy_prompts(count: int = 40, seed: int = 0) -> list[str]:
    """Prompts of the embedded model's world (its training captions' combinations, in the
    canonical wording, a seeded choice): what a LoRA export fits a non-linear network on."""
    import random

    from ..toy import world

    combinations = world.training_combinations()
    random.Random(seed).shuffle(combinations)
    return [world.plain_prompt(*combination) for combination in combinations[:count]]
