"""The training set: image files and captions in one folder, checked before anything is
written, then encoded once by the VAE into cached latents (§7.3).

Resize modes:
* `stretch` (the webui's default): every image resized to exactly width x height with
  bicubic filtering, aspect ratio not kept, no crop.
* `keep` (the webui's "Do not resize images"): each image at its own size, centre-cropped
  down to a multiple of the VAE's scale factor (the webui failed on such sizes).
* `bucket`: aspect-ratio buckets: each image scaled, keeping its aspect ratio, to the
  bucket of about width x height pixels whose shape is nearest to its own (sides a
  multiple of 8 latent pixels), then centre-cropped.
Batches only ever hold examples of one size.

Every image is decoded while the folder is checked; one that cannot be read stops the run
before its first step, with every bad file listed (the webui skipped them silently).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import HypernetFileError
from . import randomness
from .prompts import read_caption

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
BUCKET_LATENT_MULTIPLE = 8


@dataclass(frozen=True)
class ImageSource:
    path: Path
    caption: str
    size: tuple[int, int]  # the file's own pixel size (width, height)
    has_alpha: bool


@dataclass
class Example:
    """One training image, encoded. `latents[v]` is variant v (0: as is, 1: flipped)."""

    index: int
    source: ImageSource
    pixel_size: tuple[int, int]
    latents: torch.Tensor  # [variants, C, h, w] (the sample, or the mean for "random")
    std: torch.Tensor | None = None  # [variants, C, h, w] for "random" sampling
    weight: torch.Tensor | None = None  # [variants, 1, h, w] loss weight from alpha
    line: str | None = None  # the template line fixed for this image (prompts not varied)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.latents.shape[1:])


@dataclass
class Dataset:
    examples: list[Example]
    groups: dict[tuple[int, ...], list[int]] = field(default_factory=dict)

    def __post_init__(self):
        if not self.groups:
            for example in self.examples:
                self.groups.setdefault(example.latent_shape, []).append(example.index)

    def __len__(self) -> int:
        return len(self.examples)


# -- finding and checking files ----------------------------------------------------------

def list_images(folder) -> list[Path]:
    """Image files directly in `folder` (sorted by name); errors name the folder."""
    folder = Path(folder)
    if not folder.exists():
        raise HypernetFileError(folder, "dataset folder does not exist")
    if not folder.is_dir():
        raise HypernetFileError(folder, "dataset path is not a folder")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        others = sorted(p.name for p in folder.iterdir())
        found = f"; it holds {', '.join(others[:8])}{', ...' if len(others) > 8 else ''}" if others else " (it is empty)"
        raise HypernetFileError(
            folder, f"dataset folder has no images ({', '.join(sorted(IMAGE_EXTENSIONS))}){found}"
        )
    return paths


def _open(path: Path):
    from PIL import Image

    image = Image.open(path)
    image.load()  # decode fully now: truncated files fail here, not mid-run
    return image


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def scan(folder, word_regex: str = "", join: str = " ") -> list[ImageSource]:
    """Every image of the folder, decoded once to prove it readable, with its caption.
    Unreadable images are all reported together."""
    from PIL import Image, UnidentifiedImageError

    sources, failures = [], []
    for path in list_images(folder):
        try:
            with _open(path) as image:
                size, alpha = image.size, _has_alpha(image)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            failures.append(f"{path.name} ({str(error).splitlines()[0] if str(error) else type(error).__name__})")
            continue
        sources.append(ImageSource(path, read_caption(path, word_regex, join), size, alpha))
    if failures:
        raise HypernetFileError(
            folder, f"{len(failures)} image(s) cannot be read: {'; '.join(failures)}. Fix or remove them and run again"
        )
    return sources


# -- pixel preparation (one table of small functions, looked up by resize mode) ----------

def _centre_crop(image, width: int, height: int):
    left = (image.width - width) // 2
    top = (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def _stretch(image, target: tuple[int, int], multiple: int):
    from PIL import Image

    return image if image.size == target else image.resize(target, Image.BICUBIC)


def _keep(image, target: tuple[int, int], multiple: int):
    width, height = (side - side % multiple for side in image.size)
    if min(width, height) < multiple:
        return _stretch(image, (max(width, multiple), max(height, multiple)), multiple)
    return image if (width, height) == image.size else _centre_crop(image, width, height)


def bucket_size(size: tuple[int, int], target: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The bucket for an image of `size`: sides multiples of `multiple`, area at most the
    target's and not growable on either side, aspect ratio nearest the image's."""
    area = target[0] * target[1]
    aspect = size[0] / size[1]
    candidates = set()
    side = multiple
    while side * multiple <= area:
        other = (area // side) // multiple * multiple
        candidates.update({(side, other), (other, side)})
        side += multiple
    if not candidates:
        return multiple, multiple
    return min(candidates, key=lambda wh: (round(abs(math.log(wh[0] / wh[1] / aspect)), 9), -wh[0] * wh[1], wh))


def _bucket(image, target: tuple[int, int], multiple: int):
    from PIL import Image

    width, height = bucket_size(image.size, target, multiple * BUCKET_LATENT_MULTIPLE)
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.BICUBIC)
    return _centre_crop(resized, width, height)


RESIZERS: dict[str, Callable] = {"stretch": _stretch, "keep": _keep, "bucket": _bucket}


def prepare(image, mode: str, target: tuple[int, int], multiple: int):
    """The image as the model will see it (RGBA kept so the alpha can weight the loss)."""
    converted = image.convert("RGBA") if _has_alpha(image) else image.convert("RGB")
    return RESIZERS[mode](converted, target, multiple)


def to_pixels(image) -> torch.Tensor:
    """[3, H, W] in [-1, 1], as the VAE expects."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def alpha_weight(image, latent_size: tuple[int, int]) -> torch.Tensor:
    """[1, h, w] loss weight from the alpha channel at latent size, shifted to min 0 and
    scaled to mean 1 (webui); all ones without alpha or when the alpha is uniform."""
    from PIL import Image

    if image.mode != "RGBA":
        return torch.ones(1, latent_size[1], latent_size[0])
    alpha = image.getchannel("A").resize(latent_size, Image.BICUBIC)
    weight = torch.from_numpy(np.asarray(alpha, dtype=np.float32) / 255.0)
    weight = weight - weight.min()
    mean = weight.mean()
    if mean <= 1e-6:
        return torch.ones(1, latent_size[1], latent_size[0])
    return (weight / mean).unsqueeze(0)


# -- encoding ------------------------------------------------------------------------------

@torch.no_grad()
def _encode(vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    parameter = next(vae.parameters())
    distribution = vae.encode(pixels.to(parameter.device, parameter.dtype)).latent_dist
    return distribution.mean.float().cpu(), distribution.std.float().cpu()


def _latent_transform(vae) -> tuple[float, float]:
    config = vae.config
    shift = getattr(config, "shift_factor", None) or 0.0
    return float(config.scaling_factor), float(shift)


def encode(sources: Sequence[ImageSource], vae, *, mode: str, target: tuple[int, int], multiple: int,
           sampling: str, flip: bool, use_alpha_weight: bool, seed: int,
           on_image: Callable[[int], None] | None = None) -> Dataset:
    """Encode every image once (and its mirror image when `flip`). `once` draws the
    latent sample here from the run's seed; `deterministic` keeps the mean; `random`
    keeps mean and std to draw a new sample whenever the example is used."""
    from PIL import ImageOps

    scale, shift = _latent_transform(vae)
    original_dtype = next(vae.parameters()).dtype
    examples = []
    try:
        for index, source in enumerate(sources):
            with _open(source.path) as image:
                prepared = prepare(image, mode, target, multiple)
            variants = [prepared, ImageOps.mirror(prepared)] if flip else [prepared]
            pixels = torch.stack([to_pixels(v) for v in variants])
            mean, std = _encode(vae, pixels)
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all()) and next(vae.parameters()).dtype != torch.float32:
                vae.to(torch.float32)  # half-precision VAEs can overflow; redo this and later images in fp32
                mean, std = _encode(vae, pixels)
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
                raise HypernetFileError(source.path, "the VAE turned this image into non-finite latents")
            if sampling == "once":
                noise = torch.randn(mean.shape, generator=randomness.generator(seed, "latent-once", index))
                latents, kept_std = mean + std * noise, None
            elif sampling == "deterministic":
                latents, kept_std = mean, None
            else:
                latents, kept_std = mean, std * scale
            latents = (latents - shift) * scale
            weight = None
            if use_alpha_weight:
                latent_size = (latents.shape[-1], latents.shape[-2])
                weight = torch.stack([alpha_weight(v, latent_size) for v in variants])
            examples.append(Example(index, source, prepared.size, latents.contiguous(), kept_std, weight))
            if on_image is not None:
                on_image(index)
    finally:
        if next(vae.parameters()).dtype != original_dtype:
            vae.to(original_dtype)
    return Dataset(examples)


def sample_latents(example: Example, variant: int, generator: torch.Generator) -> torch.Tensor:
    """The example's latents for one use ([C, h, w]); a fresh draw for "random"."""
    latents = example.latents[variant]
    if example.std is None:
        return latents
    return latents + example.std[variant] * torch.randn(latents.shape, generator=generator)


# -- batches -------------------------------------------------------------------------------

def epoch_batches(groups: dict[tuple[int, ...], list[int]], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: `total // batch_size` of them, each from one size group.

    Full batches are cut from each group's shuffled order; the rest is topped up with
    batches made of a group's leftovers plus other images of that group (largest
    leftovers first). A group smaller than the batch size gives one smaller batch.
    Deterministic in (seed, epoch)."""
    generator = randomness.generator(seed, "epoch-order", epoch)
    total = sum(len(members) for members in groups.values())
    wanted = max(1, total // batch_size)
    batches, leftovers = [], []
    for shape in sorted(groups):
        members = groups[shape]
        order = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        full = len(order) // batch_size
        batches.extend(order[i * batch_size:(i + 1) * batch_size] for i in range(full))
        rest = order[full * batch_size:]
        if rest:
            leftovers.append((rest, order[: full * batch_size]))
    leftovers.sort(key=lambda item: -len(item[0]))
    for rest, used in leftovers:
        if len(batches) >= wanted:
            break
        need = batch_size - len(rest)
        batches.append(rest + used[:need])
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order][:wanted]
