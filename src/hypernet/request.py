"""One generation job, with the webui's txt2img parameters (plus its img2img and hires-fix
settings when asked for), and what it may ask for: checked before any sampling starts,
each problem named by its field."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from .errors import HypernetError
from .samplers import DEFAULT_SAMPLER

MAX_SEED = 2**32 - 1  # random seeds are drawn below this, as the webui draws them
SEED_LIMIT = 2**64 - 1  # the largest seed torch's generators take


MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # the webui's order (its codes 0-3)
LATENT_UPSCALERS = {  # name -> (torch interpolate mode, antialias), as the webui lists them
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_UPSCALERS = ("None", "Lanczos", "Nearest")  # PIL resampling; no model download


@dataclass
class Img2Img:
    """img2img and inpainting settings, by the webui's names. `image` and `mask` are PIL
    images; the mask is white where the picture is repainted (`invert_mask` flips it)."""

    image: object
    denoising_strength: float = 0.75
    resize_mode: str = "just resize"
    mask: object = None
    mask_blur: int = 4
    masked_content: str = "original"
    only_masked: bool = False  # the webui's "Inpaint area: Only masked"
    only_masked_padding: int = 32
    invert_mask: bool = False

    def problems(self) -> list[str]:
        from .img2img_images import RESIZE_MODES

        problems = []
        if not hasattr(self.image, "convert"):
            problems.append("img2img needs an init image")
        if not (isinstance(self.denoising_strength, (int, float)) and 0 <= self.denoising_strength <= 1):
            problems.append(f"denoising strength must be between 0 and 1 (got {self.denoising_strength})")
        if str(self.resize_mode).lower() not in RESIZE_MODES and self.resize_mode not in (0, 1, 2):
            problems.append(f"resize mode {self.resize_mode!r} is unknown; valid: {', '.join(RESIZE_MODES)}")
        if self.masked_content not in MASKED_CONTENT:
            problems.append(f"masked content {self.masked_content!r} is unknown; valid: {', '.join(MASKED_CONTENT)}")
        blur = self.mask_blur if isinstance(self.mask_blur, (tuple, list)) else (self.mask_blur,)
        if any(not math.isfinite(value) or value < 0 for value in blur) or self.only_masked_padding < 0:
            problems.append("mask blur and only-masked padding must be 0 or more")
        if self.mask is not None and not hasattr(self.mask, "convert"):
            problems.append("the mask must be an image")
        return problems


@dataclass
class HiresFix:
    """The webui's hires fix: generate at the request's size, upscale by `scale` (or to
    `resize_width` x `resize_height`), then denoise again at the new size. Empty hires
    prompts and None sampler/CFG mean "as the first pass"; steps 0 means the first
    pass's steps."""

    scale: float = 2.0
    upscaler: str = "Latent"
    steps: int = 0
    denoising_strength: float = 0.7
    resize_width: int = 0
    resize_height: int = 0
    prompt: str = ""
    negative_prompt: str = ""
    sampler: str | None = None
    cfg_scale: float | None = None

    def problems(self) -> list[str]:
        problems = []
        if self.upscaler not in LATENT_UPSCALERS and self.upscaler not in PIXEL_UPSCALERS:
            problems.append(f"hires upscaler {self.upscaler!r} is unknown; valid: "
                            f"{', '.join([*LATENT_UPSCALERS, *PIXEL_UPSCALERS])}")
        if not (math.isfinite(self.scale) and self.scale >= 1) and not (self.resize_width or self.resize_height):
            problems.append(f"hires scale must be at least 1 (got {self.scale})")
        if self.steps < 0:
            problems.append(f"hires steps must be 0 (as the first pass) or more (got {self.steps})")
        if not 0 <= self.denoising_strength <= 1:
            problems.append(f"hires denoising strength must be between 0 and 1 (got {self.denoising_strength})")
        if self.resize_width < 0 or self.resize_height < 0:
            problems.append("hires resize width and height must be 0 (from the scale) or more")
        if self.cfg_scale is not None and not math.isfinite(self.cfg_scale):
            problems.append(f"hires CFG scale must be a finite number (got {self.cfg_scale})")
        return problems

    def target(self, width: int, height: int, multiple: int) -> tuple[int, int]:
        """The second pass's size, as the webui computes it (multiples of `multiple`)."""
        if self.resize_width and self.resize_height:
            return self.resize_width, self.resize_height
        if self.resize_width:
            return self.resize_width, _multiple_of(self.resize_width * height / width, multiple)
        if self.resize_height:
            return _multiple_of(self.resize_height * width / height, multiple), self.resize_height
        return _multiple_of(width * self.scale, multiple), _multiple_of(height * self.scale, multiple)


def _multiple_of(value: float, multiple: int) -> int:
    return max(multiple, int(value) // multiple * multiple)


@dataclass
class Request:
    """One generation job, with the webui's txt2img parameters."""

    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    width: int | None = None  # None: the model's native size
    height: int | None = None
    sampler: str = DEFAULT_SAMPLER
    schedule: str | None = None
    batch_size: int = 1
    batch_count: int = 1
    subseed: int = -1  # the webui's variation seed: noise blended in by subseed_strength
    subseed_strength: float = 0.0
    clip_skip: int | None = None  # None: the generator's own
    img2img: Img2Img | None = None  # start from a picture (and a mask: inpainting)
    hires: HiresFix | None = None  # txt2img only: upscale and denoise again

    def validated(self, native_size: int, multiple: int) -> "Request":
        width = native_size if self.width is None else self.width
        height = native_size if self.height is None else self.height
        problems = []
        if not math.isfinite(self.cfg_scale):
            problems.append(f"CFG scale must be a finite number (got {self.cfg_scale})")
        for label, value, count in (("seed", self.seed, self.batch_size * self.batch_count),
                                    ("subseed", self.subseed, self.batch_size * self.batch_count)):
            if value is not None and value >= 0 and value + count - 1 > SEED_LIMIT:
                problems.append(f"{label} {value} is too large: use -1 (random) or a whole number from 0 to "
                                f"{SEED_LIMIT - count + 1}")
            elif value is not None and value < -1:
                problems.append(f"{label} {value} must be -1 (random) or a whole number of at least 0")
        if self.steps < 1:
            problems.append(f"steps must be at least 1 (got {self.steps})")
        if self.batch_size < 1 or self.batch_count < 1:
            problems.append(f"batch size and count must be at least 1 (got {self.batch_size}, {self.batch_count})")
        for label, value in (("width", width), ("height", height)):
            if value < multiple or value % multiple:
                problems.append(f"{label} {value} must be a positive multiple of {multiple} "
                                f"(leave it out for the model's native size, {native_size})")
        if not 0 <= self.subseed_strength <= 1:
            problems.append(f"subseed strength must be between 0 and 1 (got {self.subseed_strength})")
        if self.clip_skip is not None and self.clip_skip < 1:
            problems.append(f"clip skip must be at least 1 (got {self.clip_skip})")
        if self.img2img is not None:
            problems += self.img2img.problems()
            if self.hires is not None:
                problems.append("the hires fix is for txt2img; with an init image, set the size you want instead")
        hires_problems = self.hires.problems() if self.hires is not None else []
        problems += hires_problems
        if self.hires is not None and not hires_problems:  # a NaN or infinite scale has no target
            for label, value in zip(("hires width", "hires height"), self.hires.target(width, height, multiple)):
                if value % multiple:
                    problems.append(f"{label} {value} must be a multiple of {multiple}")
        if problems:
            raise HypernetError("; ".join(problems))
        seed = self.seed if self.seed is not None and self.seed >= 0 else random.randrange(MAX_SEED)
        subseed = self.subseed if self.subseed is not None and self.subseed >= 0 else random.randrange(MAX_SEED)
        return dataclasses.replace(self, width=width, height=height, seed=seed, subseed=subseed)


def batch_key(request: Request) -> tuple:
    """What the images of one UNet batch must share (the rest, prompts, seeds and
    hypernetworks included, may differ per image)."""
    return (request.width, request.height, request.steps, request.cfg_scale, request.sampler, request.schedule,
            request.subseed_strength)


def group_requests(requests) -> list[list[int]]:
    """Indices of `requests` grouped by `batch_key`, in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(batch_key(request), []).append(index)
    return list(groups.values())
