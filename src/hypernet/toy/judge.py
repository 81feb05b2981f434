"""A tiny judge for pictures of the synthetic world: which shape, which colour, which
background (a small CNN with three heads), and how strongly a picture shows each style
(two hand-written statistics, no learning involved).

The style scores are meant for comparisons ("at multiplier 1 the score moves >= 80% of
the way from the base model's pictures to the style set's"), so they are plain,
monotone measurements of the look that each style transform draws:

* ``water``: *ripple energy*. With the brightness of a pixel the mean of R, G, B,
  the mean absolute brightness difference between pixels ``WAVE_LAG`` rows apart minus
  the same between pixels ``WAVE_LAG`` columns apart, times 10. Flat areas score
  nothing and the outline of a shape scores about as much across as along (so it
  cancels); horizontal bands alternating light and dark score high.
* ``neon``: *outline energy*. The white top-hat of the brightness (max of R, G, B):
  brightness minus its morphological opening with a ``TOPHAT_SIZE`` square, which keeps
  bright structures thinner than the square (glowing outlines) and removes filled
  shapes and backgrounds; weighted per pixel by how dark the neighbourhood is (1 minus
  the opening), averaged over the picture, times 10.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn
from torch.nn import functional as F

from ..errors import HypernetConfigError, HypernetFileError
from . import model, world

JUDGE_WEIGHTS = "judge.safetensors"
WAVE_LAG = 3
TOPHAT_SIZE = 7


# --- style statistics ----------------------------------------------------------------


def _pixels(images) -> torch.Tensor:
    """PIL images, a (N,3,H,W) tensor in [-1,1], or a path list, as (N,3,H,W) in [0,1]."""
    if isinstance(images, torch.Tensor):
        return ((images.float() + 1.0) / 2.0).clamp(0, 1)
    loaded = [Image.open(image) if isinstance(image, (str, Path)) else image for image in images]
    return torch.from_numpy((world.image_array(loaded) + 1.0) / 2.0)


def water_score(images) -> torch.Tensor:
    """Ripple energy per image (see the module docstring)."""
    brightness = _pixels(images).mean(dim=1)
    along_columns = (brightness[:, WAVE_LAG:, :] - brightness[:, :-WAVE_LAG, :]).abs().mean(dim=(1, 2))
    along_rows = (brightness[:, :, WAVE_LAG:] - brightness[:, :, :-WAVE_LAG]).abs().mean(dim=(1, 2))
    return 10.0 * (along_columns - along_rows)


def neon_score(images) -> torch.Tensor:
    """Outline energy per image (see the module docstring)."""
    pixels = _pixels(images)
    brightness = pixels.amax(dim=1, keepdim=True)
    pad = TOPHAT_SIZE // 2
    eroded = -F.max_pool2d(-F.pad(brightness, (pad,) * 4, mode="replicate"), TOPHAT_SIZE, stride=1)
    opened = F.max_pool2d(F.pad(eroded, (pad,) * 4, mode="replicate"), TOPHAT_SIZE, stride=1)
    tophat = (brightness - opened).clamp(min=0)
    return 10.0 * (tophat * (1.0 - opened)).mean(dim=(1, 2, 3))


def _style_score_table() -> dict[str, Callable]:
    return {"water": water_score, "neon": neon_score}


def style_score(images, style: str) -> torch.Tensor:
    table = _style_score_table()
    if style not in table:
        raise HypernetConfigError(f"unknown style {style!r}; valid styles: {', '.join(table)}")
    return table[style](images)


def style_progress(base_score: float, styled_score: float, set_score: float) -> float:
    """How far (0 = base, 1 = style set) a score has moved from the base model's
    pictures towards the style set's."""
    span = set_score - base_score
    if abs(span) < 1e-12:
        raise HypernetConfigError("the base and style-set scores are equal; the style cannot be measured")
    return (styled_score - base_score) / span


# --- the classifier ------------------------------------------------------------------

HEADS = {"shape": world.SHAPES, "colour": world.COLOUR_NAMES, "background": world.BACKGROUND_NAMES}


class Judge(nn.Module):
    """Four strided conv layers, global average pooling, one linear head per question."""

    def __init__(self, width: int = 16):
        super().__init__()
        channels = (3, width, width * 2, width * 4, width * 4)
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip(channels, channels[1:]):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.GroupNorm(8, out_channels),
                nn.SiLU(),
                nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1),
                nn.SiLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({name: nn.Linear(channels[-1], len(labels)) for name, labels in HEADS.items()})

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """`pixels`: (N, 3, 64, 64) in [-1, 1]; returns logits per head."""
        if pixels.shape[-2:] != (world.IMAGE_SIZE, world.IMAGE_SIZE):
            pixels = F.interpolate(pixels, size=(world.IMAGE_SIZE,) * 2, mode="bilinear", antialias=True)
        features = self.features(pixels).mean(dim=(2, 3))
        return {name: head(features) for name, head in self.heads.items()}


@dataclass
class Prediction:
    shape: str
    colour: str
    background: str
    confidence: dict[str, float]
    water: float
    neon: float


def _degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    """What a small diffusion model does to a clean picture: blur, noise, colour drift,
    smeared edges. Training on these keeps the judge honest on generated pictures."""
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.8)))
    if rng.random() < 0.3:
        small = rng.choice((16, 24, 32))
        image = image.resize((small, small), Image.BILINEAR).resize((world.IMAGE_SIZE,) * 2, Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * rng.uniform(0.85, 1.15) + np.array([rng.uniform(-18, 18) for _ in range(3)], dtype=np.float32)
    if rng.random() < 0.6:
        noise_rng = np.random.default_rng(rng.randrange(2**32))
        pixels = pixels + noise_rng.normal(0.0, rng.uniform(2, 14), pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _labels(scenes: Sequence[world.Scene]) -> dict[str, torch.Tensor]:
    return {
        "shape": torch.tensor([world.SHAPES.index(scene.shape) for scene in scenes]),
        "colour": torch.tensor([world.COLOUR_NAMES.index(scene.colour) for scene in scenes]),
        "background": torch.tensor([world.BACKGROUND_NAMES.index(scene.background) for scene in scenes]),
    }


STYLE_SHARE = 0.3  # share of the judge's training pictures drawn in a style (half each)


def _training_style(rng: random.Random) -> str:
    """The judge answers "which shape, which colour" through a style too, so it can
    check that a style hypernetwork changed the look and kept the content."""
    roll = rng.random()
    return "plain" if roll >= STYLE_SHARE else ("water" if roll < STYLE_SHARE / 2 else "neon")


def _all_combinations() -> list[tuple[str, str, str]]:
    return world.training_combinations() + world.held_out_combinations()


def train_judge(
    steps: int = 1200,
    batch_size: int = 32,
    seed: int = 0,
    learning_rate: float = 2e-3,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Judge, dict[str, float]]:
    """Trains the judge on fresh, degraded pictures of every combination, plain and
    styled (the judge is a measuring instrument, so it may see the combinations the
    model is denied) and
    returns it with its accuracy per head on 512 clean held-out pictures."""
    from tqdm import tqdm

    with model.seeded(seed):
        rng = random.Random(seed)
        judge = Judge()
        optimizer = torch.optim.AdamW(judge.parameters(), lr=learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max(steps, 1), pct_start=0.1)
        combinations = _all_combinations()
        judge.train()
        bar = tqdm(range(steps), desc="judge", disable=not progress, mininterval=2.0)
        for step in bar:
            scenes = [world.random_scene(rng, rng.choice(combinations)) for _ in range(batch_size)]
            styles = [_training_style(rng) for _ in scenes]
            images = [_degrade(world.draw(scene, style), rng) for scene, style in zip(scenes, styles)]
            pixels = torch.from_numpy(world.image_array(images))
            logits = judge(pixels)
            labels = _labels(scenes)
            # Neon pictures are drawn on a night background whatever the caption says.
            labels["background"][torch.tensor([style == "neon" for style in styles])] = -100
            loss = sum(F.cross_entropy(logits[name], labels[name], ignore_index=-100) for name in HEADS)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        judge.eval()
        accuracy = evaluate_judge(judge, seed=seed + 1000)
        log("judge accuracy on clean pictures: " + ", ".join(f"{name} {value:.3f}" for name, value in accuracy.items()))
        return judge, accuracy


@torch.no_grad()
def evaluate_judge(judge: Judge, count: int = 512, seed: int = 1000, degrade: bool = False) -> dict[str, float]:
    rng = random.Random(seed)
    scenes = [world.random_scene(rng, rng.choice(_all_combinations())) for _ in range(count)]
    images = [world.draw_plain(scene) for scene in scenes]
    if degrade:
        images = [_degrade(image, rng) for image in images]
    logits = judge(torch.from_numpy(world.image_array(images)))
    labels = _labels(scenes)
    return {name: (logits[name].argmax(dim=1) == labels[name]).float().mean().item() for name in HEADS}


def save_judge(judge: Judge, folder: str | Path, accuracy: dict[str, float] | None = None) -> Path:
    """Writes `judge.safetensors` (fp16) with its label lists in the metadata."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / JUDGE_WEIGHTS
    tensors = {name: value.detach().to(torch.float16).contiguous() for name, value in judge.state_dict().items()}
    metadata = {"heads": json.dumps(HEADS), "format": "hypernet-toy-judge-1"}
    if accuracy:
        metadata["accuracy"] = json.dumps(accuracy)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_judge(path: str | Path | None = None) -> Judge:
    """The shipped judge by default; `path` is a folder or a `judge.safetensors`."""
    from safetensors import safe_open

    from .model import shipped_model_folder

    path = Path(path) if path is not None else shipped_model_folder()
    if path.is_dir():
        path = path / JUDGE_WEIGHTS
    if not path.is_file():
        raise HypernetFileError(path, "no judge weights here; train them with `hypernet toy train-judge`")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        heads = json.loads(metadata.get("heads", "{}"))
        if heads != {name: list(labels) for name, labels in HEADS.items()}:
            raise HypernetFileError(path, f"judge labels {heads} do not match this version's world {HEADS}")
        state = {key: handle.get_tensor(key).float() for key in handle.keys()}
    judge = Judge()
    try:
        judge.load_state_dict(state)
    except RuntimeError as error:
        raise HypernetFileError(path, f"not a judge of this architecture: {error}") from None
    return judge.eval()


@torch.no_grad()
def judge_images(judge: Judge, images) -> list[Prediction]:
    """Predictions and style scores for PIL images, paths or a (N,3,H,W) tensor in [-1,1]."""
    pixels01 = _pixels(images)
    logits = judge(pixels01 * 2.0 - 1.0)
    water = water_score(pixels01 * 2.0 - 1.0)
    neon = neon_score(pixels01 * 2.0 - 1.0)
    predictions = []
    for index in range(pixels01.shape[0]):
        chosen = {}
        confidence = {}
        for name, labels in HEADS.items():
            probabilities = logits[name][index].softmax(dim=0)
            best = int(probabilities.argmax())
            chosen[name] = labels[best]
            confidence[name] = float(probabilities[best])
        predictions.append(Prediction(**chosen, confidence=confidence, water=float(water[index]), neon=float(neon[index])))
    return predictions


def timed_train_judge(out_folder: str | Path, steps: int = 1200, seed: int = 0, progress: bool = True, log=print) -> dict:
    """Trains and saves the judge; returns a summary for the CLI and the docs."""
    start = time.perf_counter()
    judge, accuracy = train_judge(steps=steps, seed=seed, progress=progress, log=log)
    path = save_judge(judge, out_folder, accuracy)
    return {"path": str(path), "seconds": time.perf_counter() - start, "accuracy": accuracy}
