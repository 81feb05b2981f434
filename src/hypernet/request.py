"""One generation job, with the webui's txt2img parameters, and what it may ask for:
checked before any sampling starts, each problem named by its field."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

from .errors import HypernetError
from .samplers import DEFAULT_SAMPLER

MAX_SEED = 2**32 - 1  # random seeds are drawn below this, as the webui draws them
SEED_LIMIT = 2**64 - 1  # the largest seed torch's generators take


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
        if problems:
            raise HypernetError("; ".join(problems))
        seed = self.seed if self.seed is not None and self.seed >= 0 else random.randrange(MAX_SEED)
        subseed = self.subseed if self.subseed is not None and self.subseed >= 0 else random.randrange(MAX_SEED)
        return dataclasses.replace(self, width=width, height=height, seed=seed, subseed=subseed)
