"""Preview pictures during training: exactly the network being trained, at multiplier 1,
through the project's own generator (so the picture is what generation will give).
Prompt tags are removed from the preview prompts: only the training network applies."""

from __future__ import annotations

from pathlib import Path

import torch

from .config import TrainingConfig


def render(pipe, network, config: TrainingConfig, prompt: str, seed: int, size: tuple[int, int], path, model=None) -> Path:
    from ..generation import Generator, Request
    from ..infotext import write_png
    from ..prompt.networks import remove_tags

    options = config.preview
    text, _ = remove_tags(options.prompt if options.prompt is not None else prompt)
    negative, _ = remove_tags(options.negative_prompt or "")
    width = options.width or size[0]
    height = options.height or size[1]
    request = Request(prompt=text, negative_prompt=negative, steps=options.steps, cfg_scale=options.cfg_scale,
                      seed=options.seed if options.seed is not None else seed, width=width, height=height,
                      sampler=options.sampler)
    scheduler = pipe.scheduler
    was_training = network.training
    network.eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            result = Generator(pipe, library=None, model=model, clip_skip=config.clip_skip,
                               embeddings_dir=config.embeddings_dir).generate(request, networks=[(network, 1.0)], progress=False)[0]
    finally:
        pipe.scheduler = scheduler
        network.train(was_training)
    return write_png(result.image, path, result.infotext)
