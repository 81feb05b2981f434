"""Generating with the toy model and measuring what came out with the judge: shared by
the training log, the tests, the benchmarks and the CLI."""

from __future__ import annotations

import random
from typing import Sequence

import torch

from . import world

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE_SCALE = 5.0


def held_out_prompts(count: int = 60, seed: int = 0) -> list[tuple[str, tuple[str, str, str]]]:
    """`count` (prompt, combination) pairs over the combinations no training caption
    names, in the canonical wording, cycling through them in a seeded order."""
    combinations = world.held_out_combinations()
    random.Random(seed).shuffle(combinations)
    return [(world.plain_prompt(*combinations[i % len(combinations)]), combinations[i % len(combinations)]) for i in range(count)]


@torch.no_grad()
def generate(
    pipeline,
    prompts: Sequence[str],
    seeds: Sequence[int],
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    batch_size: int = 20,
) -> torch.Tensor:
    """Pictures as one (N, 3, 64, 64) tensor in [-1, 1]; picture i uses seed i."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    chunks = []
    for start in range(0, len(prompts), batch_size):
        chunk_prompts = list(prompts[start : start + batch_size])
        generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds[start : start + batch_size]]
        result = pipeline(
            chunk_prompts,
            height=world.IMAGE_SIZE,
            width=world.IMAGE_SIZE,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="pt",
        )
        chunks.append(result.images.float() * 2.0 - 1.0)
    return torch.cat(chunks)


@torch.no_grad()
def generation_accuracy(
    pipeline,
    judge,
    count: int = 60,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    batch_size: int = 20,
    grid_path=None,
) -> dict[str, float]:
    """Share of generated pictures of held-out combinations in which the judge finds
    the asked shape, colour, background, and shape and colour together; with
    `grid_path`, also saves the pictures as one grid image there."""
    from .judge import judge_images

    pairs = held_out_prompts(count, seed)
    pictures = generate(pipeline, [prompt for prompt, _ in pairs], [seed * 100003 + i for i in range(count)], steps, guidance_scale, batch_size)
    predictions = judge_images(judge, pictures)
    if grid_path is not None:
        grid(to_pil(pictures)).save(grid_path)
    hits = {"shape": 0, "colour": 0, "background": 0, "shape+colour": 0}
    for prediction, (_, (shape, colour, background)) in zip(predictions, pairs):
        hits["shape"] += prediction.shape == shape
        hits["colour"] += prediction.colour == colour
        hits["background"] += prediction.background == background
        hits["shape+colour"] += prediction.shape == shape and prediction.colour == colour
    return {name: value / count for name, value in hits.items()}


def to_pil(pictures: torch.Tensor) -> list:
    """(N, 3, H, W) in [-1, 1] as PIL images."""
    from PIL import Image

    array = ((pictures.clamp(-1, 1) + 1.0) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(item, "RGB") for item in array]


def grid(images: list, columns: int = 8):
    """Pictures side by side, `columns` to a row."""
    from PIL import Image

    width, height = images[0].size
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * width, rows * height), (0, 0, 0))
    for index, image in enumerate(images):
        canvas.paste(image, ((index % columns) * width, (index // columns) * height))
    return canvas


STYLE_MULTIPLIERS = (0.0, 0.25, 0.5, 0.75, 1.0)


def style_prompts(count: int = 20, seed: int = 0) -> list[tuple[str, tuple[str, str, str]]]:
    """`count` (prompt, combination) pairs over every combination, for judging a style."""
    rng = random.Random(seed)
    combinations = world.training_combinations() + world.held_out_combinations()
    chosen = [rng.choice(combinations) for _ in range(count)]
    return [(world.plain_prompt(*combination), combination) for combination in chosen]


@torch.no_grad()
def style_measurements(
    pipeline,
    judge,
    network,
    style: str,
    multipliers: Sequence[float] = STYLE_MULTIPLIERS,
    count: int = 20,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
) -> dict:
    """How a style hypernetwork moves generated pictures towards its style set.

    The same `count` prompts and seeds are generated without the network and at each
    multiplier; the style score of each batch is compared with the score of `count`
    pictures of the style set itself (`style_progress`: 0 = base model, 1 = style set).
    Also reports whether multiplier 0 reproduced the base pictures bit for bit and the
    share of pictures at the largest multiplier in which the judge still finds the shape
    and colour asked for."""
    from .. import attention
    from .judge import judge_images, style_progress, style_score

    pairs = style_prompts(count, seed)
    prompts = [prompt for prompt, _ in pairs]
    seeds = [seed * 100003 + 7 + index for index in range(count)]
    base = generate(pipeline, prompts, seeds, steps)
    set_pictures = [image for image, _, _ in world.sample(seed + 4242, count, style)]
    base_score = float(style_score(base, style).mean())
    set_score = float(style_score(set_pictures, style).mean())
    scores, progress, pictures = {}, {}, {}
    for multiplier in multipliers:
        with attention.activate(pipeline.unet, [(network, multiplier)]):
            pictures[multiplier] = generate(pipeline, prompts, seeds, steps)
        scores[multiplier] = float(style_score(pictures[multiplier], style).mean())
        progress[multiplier] = style_progress(base_score, scores[multiplier], set_score)
    strongest = max(multipliers)
    predictions = judge_images(judge, pictures[strongest])
    content = sum(p.shape == shape and p.colour == colour for p, (_, (shape, colour, _)) in zip(predictions, pairs)) / count
    ordered = [scores[m] for m in sorted(multipliers)]
    return {
        "style": style,
        "base_score": base_score,
        "set_score": set_score,
        "scores": scores,
        "progress": progress,
        "monotone": all(a <= b for a, b in zip(ordered, ordered[1:])),
        "zero_is_identical": bool(torch.equal(pictures[0.0], base)) if 0.0 in pictures else None,
        "content_at_strongest": content,
        "pictures": pictures,
        "base_pictures": base,
    }
