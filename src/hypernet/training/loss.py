"""The training loss (§7.4): noise the latents at a uniformly drawn timestep and regress
the model's own prediction type: the noise (epsilon models) or v (v-prediction models),
read from the scheduler's config. Mean squared error, averaged over channels and pixels
(weighted by the alpha map when asked), then over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import HypernetConfigError


def _epsilon_target(latents, noise, alpha, sigma):
    return noise


def _v_target(latents, noise, alpha, sigma):
    return alpha * noise - sigma * latents


TARGETS: dict[str, Callable] = {"epsilon": _epsilon_target, "v_prediction": _v_target}


@dataclass
class NoiseSchedule:
    alphas_cumprod: torch.Tensor  # [timesteps], fp32 on the CPU
    prediction_type: str

    @property
    def timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


def noise_schedule(scheduler_config) -> NoiseSchedule:
    """The training noise schedule of the model a scheduler was configured for (the
    sampler in use does not matter: DDPM's betas are rebuilt from the same config)."""
    from diffusers import DDPMScheduler

    config = dict(scheduler_config)
    prediction_type = config.get("prediction_type", "epsilon")
    if prediction_type not in TARGETS:
        raise HypernetConfigError(
            f"scheduler prediction_type {prediction_type!r} cannot be trained; valid types: {', '.join(TARGETS)}"
        )
    allowed = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "rescale_betas_zero_snr"}
    ddpm = DDPMScheduler(**{key: value for key, value in config.items() if key in allowed})
    return NoiseSchedule(ddpm.alphas_cumprod.float().clone(), prediction_type)


def noisy_inputs(schedule: NoiseSchedule, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
    """(noisy latents, regression target), computed in fp32."""
    alphas = schedule.alphas_cumprod.to(latents.device)[timesteps].view(-1, 1, 1, 1)
    alpha, sigma = alphas.sqrt(), (1 - alphas).sqrt()
    noisy = alpha * latents + sigma * noise
    return noisy, TARGETS[schedule.prediction_type](latents, noise, alpha, sigma)


def added_conditioning(conditioning, latents: torch.Tensor, pixels_per_latent: int, dtype) -> dict | None:
    """SDXL's `added_cond_kwargs` for a micro-batch: each example's pooled vector, and as
    size conditioning its own training size as original and target size, crop (0, 0)
    (what generation at that size passes). None for SD 1.x/2.x conditioning (a tensor)."""
    if isinstance(conditioning, torch.Tensor):
        return None
    height, width = latents.shape[-2] * pixels_per_latent, latents.shape[-1] * pixels_per_latent
    sizes = torch.tensor([height, width, 0, 0, height, width], dtype=dtype, device=latents.device)
    return {"text_embeds": conditioning.pooled.to(dtype), "time_ids": sizes.repeat(latents.shape[0], 1)}


def diffusion_loss(unet, schedule: NoiseSchedule, latents, noise, timesteps, conditioning, weight=None,
                   pixels_per_latent: int = 8) -> torch.Tensor:
    """The mean loss of one micro-batch (a 0-d fp32 tensor). `conditioning`: the text
    context [B, T, C], or for SDXL a `DualConditioning` (context and pooled vectors)."""
    latents, noise = latents.float(), noise.float()
    noisy, target = noisy_inputs(schedule, latents, noise, timesteps)
    dtype = next(unet.parameters()).dtype
    added = added_conditioning(conditioning, latents, pixels_per_latent, dtype)
    context = conditioning if added is None else conditioning.context
    prediction = unet(noisy.to(dtype), timesteps, encoder_hidden_states=context.to(dtype),
                      added_cond_kwargs=added).sample
    error = (prediction.float() - target) ** 2
    if weight is not None:
        error = error * weight
    return error.mean(dim=(1, 2, 3)).mean()
