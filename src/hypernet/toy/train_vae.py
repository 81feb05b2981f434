"""The toy model's first training stage: the VAE, on pictures of the base world and of
both styles, so its decoder can draw what a hypernetwork asks for."""

from __future__ import annotations

import random
from typing import Callable

import torch
from torch.nn import functional as F

from . import model, world
from .plans import BaseTrainingPlan, Budget, learning_rate_factor, progress_bar


def roll_style(rng: random.Random, style_share: float) -> str:
    """Returns "plain", or with probability `style_share` one of the styles (equally often)."""
    roll = rng.random()
    if roll >= style_share:
        return "plain"
    return world.STYLES[min(int(roll / style_share * len(world.STYLES)), len(world.STYLES) - 1)]


def _vae_batch(rng: random.Random, count: int, style_share: float) -> torch.Tensor:
    images = []
    for _ in range(count):
        scene = world.random_scene(rng)
        images.append(world.draw(scene, roll_style(rng, style_share)))
    return torch.from_numpy(world.image_array(images))


def _anchor_loss(latent_mean: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Latent channels 0-2 should look like the picture reduced to the latent size.
    Without it, a VAE trained for minutes keeps outlines but merges the shape colours
    (a 4-channel cell has to learn to carry them); with it, colour is in the latents
    from the first steps and the decoder only learns to sharpen. SD's own latents are
    similarly colour-like."""
    reduced = F.adaptive_avg_pool2d(pixels, latent_mean.shape[-2:])
    return F.mse_loss(latent_mean[:, :3], reduced)


def train_vae(vae, plan: BaseTrainingPlan, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Reconstruction (MSE + L1, for crisp flat colours) plus a small KL term; returns
    the steps done and the last 50 steps' mean reconstruction error."""
    rng = random.Random(plan.seed + 11)
    with model.seeded(plan.seed + 11):
        with torch.no_grad():
            # Start the posterior narrow (std 0.05): with diffusers' default (std 1) the
            # sampled latents drown the signal and the first hundreds of steps are wasted.
            vae.quant_conv.bias[vae.config.latent_channels :].fill_(-6.0)
        optimizer = torch.optim.AdamW(vae.parameters(), lr=plan.vae_learning_rate, weight_decay=0.0)
        vae.train()
        recent: list[float] = []
        budget = Budget(plan.vae_steps, plan.vae_minutes)
        step = 0
        with progress_bar(plan.vae_steps, "vae", progress) as bar:
            while (fraction := budget.fraction(step)) < 1.0:
                for group in optimizer.param_groups:
                    group["lr"] = plan.vae_learning_rate * learning_rate_factor(fraction, 0.05)
                pixels = _vae_batch(rng, plan.vae_batch_size, plan.vae_style_share)
                posterior = vae.encode(pixels).latent_dist
                reconstruction = vae.decode(posterior.sample()).sample
                mse = F.mse_loss(reconstruction, pixels)
                loss = mse + 0.5 * F.l1_loss(reconstruction, pixels) + plan.vae_kl_weight * posterior.kl().mean()
                if plan.vae_anchor_weight:
                    loss = loss + plan.vae_anchor_weight * _anchor_loss(posterior.mean, pixels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
                optimizer.step()
                recent = (recent + [mse.item()])[-50:]
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(mse=f"{sum(recent) / len(recent):.4f}")
                step += 1
        vae.eval()
        error = sum(recent) / max(1, len(recent))
        cut = " (time budget reached)" if budget.time_limited(step) else ""
        log(f"vae: {step} steps{cut}, reconstruction mse {error:.4f}")
        return {"vae_steps_done": step, "vae_mse": error}


@torch.no_grad()
def judge_reconstructions(vae, judge, count: int = 64, seed: int = 99) -> dict[str, float]:
    """The judge's accuracy on VAE round trips of plain pictures: the ceiling for
    anything the UNet can draw through this decoder."""
    from .judge import judge_images

    samples = world.sample(seed, count)
    pixels = torch.from_numpy(world.image_array([image for image, _, _ in samples]))
    reconstructions = vae.decode(vae.encode(pixels).latent_dist.mean).sample.clamp(-1, 1)
    predictions = judge_images(judge, reconstructions)
    return {
        name: sum(getattr(p, name) == getattr(scene, name) for p, (_, _, scene) in zip(predictions, samples)) / count
        for name in ("shape", "colour", "background")
    }
