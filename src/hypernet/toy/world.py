"""The synthetic world the toy model is trained on: one coloured shape on a plain
background, drawn with PIL, with a natural-language caption.

Everything is a pure function of a seed, so a training run, a test and a benchmark
that ask for "scene 17 of seed 3" all see the same picture. Two style transforms
("water", "neon") redraw the same scenes with a clear, measurable look; they are the
training sets for hypernetworks and the yardstick for judging them (see `judge.py`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import HypernetConfigError

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # shapes are drawn at 4x and reduced, so their edges are anti-aliased

SHAPES = ("circle", "square", "triangle", "cross")

# Shape colours and background colours never share a name, so "a red circle on a blue
# background" is never ambiguous and a judge can tell the two apart by hue alone.
COLOURS = {
    "red": (220, 30, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 225, 40),
    "green": (40, 175, 60),
    "cyan": (40, 215, 225),
    "purple": (145, 55, 200),
}
BACKGROUNDS = {
    "blue": (35, 60, 165),
    "black": (12, 12, 14),
    "white": (244, 244, 240),
    "gray": (125, 125, 128),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUND_NAMES = tuple(BACKGROUNDS)

# Wording variations; `{size}` is "" or an adjective with a trailing space.
CAPTION_TEMPLATES = (
    "a {size}{colour} {shape} on a {background} background",
    "a {size}{colour} {shape} on a {background} background",
    "a {size}{colour} {shape} against a {background} background",
    "{colour} {shape} on {background}",
    "a picture of a {size}{colour} {shape} on a {background} background",
    "a {background} background with a {size}{colour} {shape}",
    "{size}{colour} {shape}, {background} background",
)
SIZE_WORDS = {"small": "small ", "large": "large ", "medium": ""}
BACKGROUND_SPELLINGS = {"gray": ("gray", "grey")}

# Combinations held out of every training caption, so a test can ask for pictures the
# model has never seen whole. Each (shape, colour) and (colour, background) pair still
# occurs with other partners: (s + c + b) % 6 == 0 picks at most one background per
# (shape, colour) pair, 16 of the 96 triples.
HOLDOUT_MODULUS = 6


@dataclass(frozen=True)
class Scene:
    """What one picture shows; enough to redraw it in any style."""

    shape: str
    colour: str
    background: str
    center: tuple[float, float]  # pixels, in the 64x64 frame
    radius: float  # pixels: half the extent of the shape
    size_word: str  # "small", "medium" or "large"
    colour_jitter: tuple[int, int, int]
    wording: int  # index into CAPTION_TEMPLATES
    spelling: int  # index into BACKGROUND_SPELLINGS alternatives


def is_held_out(shape: str, colour: str, background: str) -> bool:
    """True for the triples that never appear in training captions."""
    index = SHAPES.index(shape) + COLOUR_NAMES.index(colour) + BACKGROUND_NAMES.index(background)
    return index % HOLDOUT_MODULUS == 0


def held_out_combinations() -> list[tuple[str, str, str]]:
    return [
        (shape, colour, background)
        for shape in SHAPES
        for colour in COLOUR_NAMES
        for background in BACKGROUND_NAMES
        if is_held_out(shape, colour, background)
    ]


def training_combinations() -> list[tuple[str, str, str]]:
    return [
        (shape, colour, background)
        for shape in SHAPES
        for colour in COLOUR_NAMES
        for background in BACKGROUND_NAMES
        if not is_held_out(shape, colour, background)
    ]


def random_scene(rng: random.Random, combination: tuple[str, str, str] | None = None) -> Scene:
    """Draws a scene's parameters; `combination` fixes (shape, colour, background)."""
    if combination is None:
        combination = rng.choice(training_combinations())
    shape, colour, background = combination
    size_word = rng.choice(("small", "medium", "medium", "large"))
    # Radii start at 14 px (3.5 latent cells): smaller circles and squares differ by a
    # cell or two and a small model draws them as the same blob.
    radius = {"small": rng.uniform(14, 17), "medium": rng.uniform(18, 21), "large": rng.uniform(22, 25)}[size_word]
    margin = radius + 2
    center = (rng.uniform(margin, IMAGE_SIZE - margin), rng.uniform(margin, IMAGE_SIZE - margin))
    jitter = tuple(rng.randint(-12, 12) for _ in range(3))
    return Scene(
        shape=shape,
        colour=colour,
        background=background,
        center=center,
        radius=radius,
        size_word=size_word,
        colour_jitter=jitter,
        wording=rng.randrange(len(CAPTION_TEMPLATES)),
        spelling=rng.randrange(2),
    )


def caption(scene: Scene) -> str:
    spellings = BACKGROUND_SPELLINGS.get(scene.background, (scene.background,))
    return CAPTION_TEMPLATES[scene.wording].format(
        size=SIZE_WORDS[scene.size_word],
        colour=scene.colour,
        shape=scene.shape,
        background=spellings[scene.spelling % len(spellings)],
    )


def plain_prompt(shape: str, colour: str, background: str) -> str:
    """The canonical wording, used by tests and examples."""
    return f"a {colour} {shape} on a {background} background"


# --- drawing -------------------------------------------------------------------------


def _shape_polygon(shape: str, center: tuple[float, float], radius: float) -> list[tuple[float, float]] | None:
    """Outline points in pixel units (None for the circle, drawn as an ellipse)."""
    cx, cy = center
    if shape == "circle":
        return None
    if shape == "square":
        half = radius * 0.85
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":
        return [
            (cx + radius * math.cos(math.radians(angle)), cy + radius * 1.05 * math.sin(math.radians(angle)) + radius * 0.15)
            for angle in (-90, 30, 150)
        ]
    if shape == "cross":
        arm = radius * 0.36
        return [
            (cx - arm, cy - radius), (cx + arm, cy - radius), (cx + arm, cy - arm), (cx + radius, cy - arm),
            (cx + radius, cy + arm), (cx + arm, cy + arm), (cx + arm, cy + radius), (cx - arm, cy + radius),
            (cx - arm, cy + arm), (cx - radius, cy + arm), (cx - radius, cy - arm), (cx - arm, cy - arm),
        ]
    raise HypernetConfigError(f"unknown shape {shape!r}; valid shapes: {', '.join(SHAPES)}")


def shape_mask(scene: Scene) -> Image.Image:
    """An anti-aliased 'L' mask of the shape at IMAGE_SIZE (255 inside)."""
    big = IMAGE_SIZE * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    center = (scene.center[0] * SUPERSAMPLE, scene.center[1] * SUPERSAMPLE)
    radius = scene.radius * SUPERSAMPLE
    points = _shape_polygon(scene.shape, center, radius)
    if points is None:
        draw.ellipse([center[0] - radius, center[1] - radius, center[0] + radius, center[1] + radius], fill=255)
    else:
        draw.polygon(points, fill=255)
    return mask.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)


def _colour(scene: Scene) -> tuple[int, int, int]:
    base = COLOURS[scene.colour]
    return tuple(int(np.clip(value + delta, 0, 255)) for value, delta in zip(base, scene.colour_jitter))


def _background(scene: Scene) -> tuple[int, int, int]:
    base = BACKGROUNDS[scene.background]
    return tuple(int(np.clip(value + delta // 2, 0, 255)) for value, delta in zip(base, scene.colour_jitter))


def _composite(background: np.ndarray, foreground: np.ndarray, mask: Image.Image) -> Image.Image:
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    pixels = background * (1.0 - alpha) + foreground * alpha
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def draw_plain(scene: Scene) -> Image.Image:
    """The base world: a flat-coloured shape on a flat background."""
    background = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), _background(scene), dtype=np.float32)
    foreground = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), _colour(scene), dtype=np.float32)
    return _composite(background, foreground, shape_mask(scene))


WATER_PERIOD = 10.0  # pixels between wave crests
WATER_LIGHTEN = 0.55  # light bands: this share of the way from the shape colour to white
WATER_DARKEN = 0.4  # dark bands: the shape colour times this


def draw_water(scene: Scene) -> Image.Image:
    """'water': the shape is filled with rippling horizontal bands, light and dark
    shades of its own colour bent by a sine, so the colour and shape asked for stay
    recognisable; the background stays as captioned. Measured by the judge's wave
    energy: brightness contrast along columns in excess of the contrast along rows."""
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    phase = (scene.center[0] * 0.37 + scene.radius) % (2 * math.pi)
    wave = np.sin(2 * math.pi * (ys + 2.0 * np.sin(xs * 2 * math.pi / 16.0 + phase)) / WATER_PERIOD)
    blend = (wave[..., None] + 1.0) / 2.0
    colour = np.array(_colour(scene), dtype=np.float32)
    light = colour + (255.0 - colour) * WATER_LIGHTEN
    dark = colour * WATER_DARKEN
    foreground = dark * (1.0 - blend) + light * blend
    background = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), _background(scene), dtype=np.float32)
    return _composite(background, foreground, shape_mask(scene))


NEON_BACKGROUND = (8, 4, 22)


def draw_neon(scene: Scene) -> Image.Image:
    """'neon': whatever the caption says, a near-black night background; the shape is a
    thin bright outline in its colour with a soft glow and a dark inside. Measured by
    the judge's outline energy: thin bright lines on dark."""
    mask = shape_mask(scene)
    # The outline: dilated mask minus eroded mask, about 2 px wide.
    outer = mask.filter(ImageFilter.MaxFilter(3))
    inner = mask.filter(ImageFilter.MinFilter(3))
    ring = np.clip(np.asarray(outer, dtype=np.float32) - np.asarray(inner, dtype=np.float32), 0, 255)
    ring_image = Image.fromarray(ring.astype(np.uint8), "L")
    glow = np.asarray(ring_image.filter(ImageFilter.GaussianBlur(2.5)), dtype=np.float32) / 255.0
    line = ring / 255.0
    colour = np.array(_colour(scene), dtype=np.float32)
    white_core = np.array((255, 255, 255), dtype=np.float32)
    pixels = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), NEON_BACKGROUND, dtype=np.float32)
    pixels = pixels + colour * np.clip(glow * 1.6, 0, 1)[..., None] * 0.7
    core = colour * 0.65 + white_core * 0.35
    pixels = pixels * (1 - line[..., None]) + core * line[..., None]
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def _style_table() -> dict[str, Callable[[Scene], Image.Image]]:
    return {"plain": draw_plain, "water": draw_water, "neon": draw_neon}


STYLES = ("water", "neon")  # the style transforms; "plain" is the base world


def draw(scene: Scene, style: str = "plain") -> Image.Image:
    table = _style_table()
    if style not in table:
        raise HypernetConfigError(f"unknown style {style!r}; valid styles: {', '.join(table)}")
    return table[style](scene)


def scenes(seed: int, count: int, combinations: list[tuple[str, str, str]] | None = None) -> Iterator[Scene]:
    """`count` scenes from one seed; with `combinations`, cycles through them in order
    (so every listed combination is covered evenly), otherwise draws training ones."""
    rng = random.Random(seed)
    for index in range(count):
        combination = combinations[index % len(combinations)] if combinations else None
        yield random_scene(rng, combination)


def sample(seed: int, count: int, style: str = "plain", combinations=None) -> list[tuple[Image.Image, str, Scene]]:
    """(image, caption, scene) triples, deterministic in `seed`."""
    return [(draw(scene, style), caption(scene), scene) for scene in scenes(seed, count, combinations)]


def styled_caption(scene: Scene, style: str) -> str:
    """The base model's caption for a picture in `style`: the content, then the look
    by name ("a red circle on a blue background, water style"); plain pictures get the
    plain caption. Only the base model's training uses these; hypernetwork style sets
    do not name the look (see `style_caption`)."""
    return caption(scene) if style == "plain" else f"{caption(scene)}, {style} style"


def style_caption(scene: Scene, style: str) -> str:
    """Captions for a style set describe the content, as a webui training set would;
    the hypernetwork has to learn the look itself."""
    return caption(scene)


def write_style_set(folder: str | Path, style: str, count: int = 40, seed: int = 0) -> list[Path]:
    """Writes `count` captioned images of one style in the trainer's layout
    (`000.png` + `000.txt`) and returns the image paths."""
    if style not in _style_table():
        raise HypernetConfigError(f"unknown style {style!r}; valid styles: {', '.join(_style_table())}")
    if not 1 <= count <= 10000:
        raise HypernetConfigError(f"count must be between 1 and 10000, got {count}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, scene in enumerate(scenes(seed, count)):
        image_path = folder / f"{index:03d}.png"
        draw(scene, style).save(image_path)
        (folder / f"{index:03d}.txt").write_text(style_caption(scene, style) + "\n", encoding="utf-8")
        paths.append(image_path)
    return paths


def image_array(images: list[Image.Image]) -> np.ndarray:
    """Images as one float32 array (N, 3, H, W) in [-1, 1], the model's pixel range."""
    stacked = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) for image in images])
    return stacked.transpose(0, 3, 1, 2) / 127.5 - 1.0
