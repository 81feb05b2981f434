"""The toy model's training plans (a named table entry fixes every size and step count)
and what both stages share: the budget that ends a stage at its step count or its time,
the learning-rate curve, the progress bar."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from ..errors import HypernetConfigError
from . import evaluate


@dataclass(frozen=True)
class BaseTrainingPlan:
    name: str
    seed: int = 0
    vae_steps: int = 800
    vae_minutes: float = 8.0  # a stage stops at its step count or its time budget, whichever comes first
    vae_batch_size: int = 16
    vae_learning_rate: float = 2e-3
    vae_kl_weight: float = 1e-6
    vae_style_share: float = 0.15  # share of VAE pictures drawn in a style (half water, half neon)
    vae_anchor_weight: float = 1.0  # pulls latent channels 0-2 towards the 4x-reduced RGB picture
    images: int = 10000  # captioned pictures for the UNet, encoded once
    # Share of those pictures drawn in a style, captioned with the style's name (see
    # world.styled_caption); the rest are plain. Real SD knows many looks by name, and a
    # hypernetwork's job is to bring one out without the words; a base that never saw
    # a look can only be bent towards it, shapes and all.
    unet_style_share: float = 0.25
    unet_steps: int = 10000
    unet_minutes: float = 47.0
    # Small batches: in a run this short, more updates beat larger ones (per picture
    # seen, batch 16 learnt faster than 32 in the measured runs).
    unet_batch_size: int = 8
    unet_learning_rate: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.998
    min_snr_gamma: float = 5.0
    timestep_spread: float = 1.0  # logit-normal timestep sampling (0: uniform), see train._sample_timesteps
    caption_dropout: float = 0.1
    noise_offset: float = 0.05  # a little per-channel offset noise, for pure black and white backgrounds
    eval_every: int = 1500  # 0: only at the end
    eval_count: int = 32
    eval_steps: int = evaluate.DEFAULT_STEPS


def _plan_table() -> dict[str, BaseTrainingPlan]:
    return {
        "full": BaseTrainingPlan(name="full"),
        # Proves the code path end to end in seconds; the weights it writes are useless.
        "quick": BaseTrainingPlan(
            name="quick",
            vae_steps=6,
            vae_batch_size=4,
            images=32,
            unet_steps=6,
            unet_batch_size=4,
            warmup_steps=2,
            eval_every=0,
            eval_count=4,
            eval_steps=2,
        ),
    }


def training_plan(name: str, **overrides) -> BaseTrainingPlan:
    table = _plan_table()
    if name not in table:
        raise HypernetConfigError(f"unknown training plan {name!r}; valid plans: {', '.join(table)}")
    return replace(table[name], **overrides)


class Budget:
    """How far a stage is: the larger of the share of its steps done and the share of
    its time used. On a machine fast enough to run every step within the time, the run
    is exactly reproducible from its seed; on a slower or busier one the time budget
    ends the stage early (and the summary says so), so the whole run keeps to its hour."""

    def __init__(self, steps: int, minutes: float):
        self.steps = steps
        self.seconds = minutes * 60.0
        self.started = time.perf_counter()

    def fraction(self, step: int) -> float:
        elapsed = time.perf_counter() - self.started
        return max(step / max(1, self.steps), elapsed / self.seconds if self.seconds > 0 else 0.0)

    def time_limited(self, step: int) -> bool:
        return step < self.steps


def learning_rate_factor(fraction: float, warmup_fraction: float) -> float:
    """Linear warm-up, then cosine decay to 10%, over the stage's progress fraction."""
    if fraction < warmup_fraction:
        return max(fraction / warmup_fraction, 0.01)
    progress = (fraction - warmup_fraction) / max(1e-9, 1.0 - warmup_fraction)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def progress_bar(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=not enabled, mininterval=2.0, dynamic_ncols=True)
