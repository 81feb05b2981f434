"""The denoising loop: one UNet batch of images, each with its own conditioning and
hypernetwork chain, started from noise (txt2img) or from encoded latents (img2img,
inpainting, the hires fix's second pass).

Why our own loop rather than the diffusers pipeline's: the pipeline combines one
conditional and one unconditional prediction per image, while the webui's prompt
language needs any number per image (`AND` parts, each with its guidance weight), a
masked start (inpainting) and a different hypernetwork chain per image of one batch.
Everything else is the pipeline's arithmetic, in the pipeline's order: a plain txt2img
batch comes out bit-identical to `StableDiffusionPipeline.__call__` (tested), and every
diffusers scheduler works through its own `set_timesteps` / `scale_model_input` / `step`.

UNet batch layout: the unconditional rows first (one per image, in image order), then
the conditional rows (each image's AND parts, in order): diffusers' [uncond, cond] for
one part per image. With CFG scale <= 1 and one plain part per image there are no
unconditional rows, as in diffusers.

SDXL: schedules hold `DualConditioning` (context and pooled vector) and every image has
its `time_ids`; each UNet row gets its own pooled vector (an unconditional row the
negative prompt's, a conditional row its AND part's) and its image's time_ids through
`added_cond_kwargs`, as `StableDiffusionXLPipeline` passes them (bit-identical, tested).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import attention
from .errors import HypernetError


@dataclass
class ImageJob:
    """One image of a UNet batch.

    parts: the positive prompt's AND parts, each (guidance weight, per-step schedule
    [(until_step, encoding [T, C])]); negative: the negative prompt's schedule; chain:
    the hypernetworks applied to every UNet row of this image."""

    noise: torch.Tensor  # [C, h, w], the seed's noise
    generator: torch.Generator  # the scheduler's own noise (ancestral and SDE samplers)
    parts: list
    negative: list
    chain: tuple = ()
    time_ids: torch.Tensor | None = None  # [6], SDXL's size conditioning (prompt.sdxl.time_ids)


@dataclass
class Start:
    """Where img2img starts: encoded init latents [B, C, h, w], the share of the schedule
    to run, and for inpainting `mask` [B or 1, 1, h, w] (1 = repaint, 0 = keep)."""

    latents: torch.Tensor
    strength: float
    mask: torch.Tensor | None = None


@dataclass
class Guidance:
    """Classifier-free guidance for a batch: the scale, and for models distilled with a
    guidance embedding (LCM) the `timestep_cond` diffusers computes from it."""

    scale: float
    timestep_cond: torch.Tensor | None = None


@dataclass
class _Rows:
    """Which UNet row belongs to which image and conditioning."""

    jobs: Sequence[ImageJob]
    guidance: float
    empty: torch.Tensor  # the empty prompt's encoding, padding for shorter rows
    plain: bool = field(init=False)  # one part of weight 1 per image: diffusers' formula
    unconditional: bool = field(init=False)
    schedules: list = field(init=False)
    images: list = field(init=False)  # image index of every conditional row
    weights: list = field(init=False)

    def __post_init__(self):
        self.plain = all(len(job.parts) == 1 and job.parts[0][0] == 1.0 for job in self.jobs)
        self.unconditional = self.guidance > 1 or not self.plain
        self.schedules = [job.negative for job in self.jobs] if self.unconditional else []
        self.images, self.weights = [], []
        for index, job in enumerate(self.jobs):
            for weight, schedule in job.parts:
                self.schedules.append(schedule)
                self.images.append(index)
                self.weights.append(weight)

    @property
    def image_of_row(self) -> list[int]:
        return (list(range(len(self.jobs))) if self.unconditional else []) + self.images

    @property
    def chains(self) -> list:
        return [self.jobs[image].chain for image in self.image_of_row]

    @property
    def changes(self) -> bool:
        return any(len(schedule) > 1 for schedule in self.schedules)

    def embeddings(self, step: int, device, dtype) -> tuple[torch.Tensor, dict | None]:
        """(context [rows, T, C], SDXL's added_cond_kwargs or None) for the call `step`."""
        from .prompt.conditioning import conditioning_at, stack_padded

        entries = [conditioning_at(s, step) for s in self.schedules]
        if isinstance(self.empty, torch.Tensor):
            return stack_padded(entries, self.empty).to(device, dtype), None
        context = stack_padded([entry.context for entry in entries], self.empty.context).to(device, dtype)
        missing = [image for image in self.image_of_row if self.jobs[image].time_ids is None]
        if missing:
            raise HypernetError(f"image {missing[0]} of an SDXL batch has no time_ids (ImageJob.time_ids)")
        added = {"text_embeds": torch.stack([entry.pooled for entry in entries]).to(device, dtype),
                 "time_ids": torch.stack([self.jobs[image].time_ids for image in self.image_of_row]).to(device, dtype)}
        return context, added

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        """The webui's composable guidance: uncond + Σ (cond_j − uncond) · (w_j · scale)
        per image; for plain rows exactly diffusers' `uncond + scale * (cond − uncond)`."""
        if not self.unconditional:
            return prediction
        count = len(self.jobs)
        uncond, cond = prediction[:count], prediction[count:]
        if self.plain:
            return uncond + self.guidance * (cond - uncond)
        result = uncond.clone()
        for row, (image, weight) in enumerate(zip(self.images, self.weights)):
            result[image] += (cond[row] - uncond[image]) * (weight * self.guidance)
        return result


def step_keywords(scheduler, generators) -> dict:
    """What the pipeline passes to `scheduler.step` besides the tensors."""
    accepted = inspect.signature(scheduler.step).parameters
    keywords = {}
    if "eta" in accepted:
        keywords["eta"] = 0.0
    if "generator" in accepted:
        keywords["generator"] = generators
    return keywords


def schedule(scheduler, steps: int, device, strength: float | None = None) -> torch.Tensor:
    """The timesteps to run: all of them for txt2img, the last `int(steps * strength)`
    steps' worth for img2img (the count the webui and diffusers both run)."""
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    if strength is None:
        return timesteps
    run = min(int(steps * strength), steps)
    begin = (steps - run) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return timesteps[begin:]


def denoise(unet, scheduler, jobs: Sequence[ImageJob], steps: int, guidance: Guidance, empty: torch.Tensor, *,
            start: Start | None = None, condition: torch.Tensor | None = None, fold: bool = True, cache=None,
            on_step: Callable[[int, int, torch.Tensor], None] | None = None,
            stop: Callable[[], bool] = lambda: False) -> tuple[torch.Tensor, int]:
    """(latents, steps run). `condition` [B, 5, h, w] is what an inpainting UNet (9 input
    channels) takes besides the latents: the mask and the masked picture's latents.
    `on_step(index, total, latents)` after every scheduler step; `stop()` is asked
    before each one (True: the latents are returned as they are)."""
    device, dtype = unet.device, unet.dtype
    rows = _Rows(jobs, guidance.scale, empty)
    noise = torch.stack([job.noise for job in jobs]).to(device, dtype)
    timesteps = schedule(scheduler, steps, device, None if start is None else start.strength)
    if start is None:
        latents = noise * scheduler.init_noise_sigma
    elif len(timesteps):
        latents = scheduler.add_noise(start.latents, noise, timesteps[:1].repeat(len(jobs)))
    else:
        latents = start.latents
    keywords = step_keywords(scheduler, [job.generator for job in jobs])
    select = torch.tensor(rows.image_of_row, device=device)
    same_rows = select.tolist() == list(range(len(jobs))) * (len(select) // len(jobs))
    embeddings, added = rows.embeddings(0, device, dtype)
    done = 0
    with attention.activate_rows(unet, rows.chains, fold=fold, cache=cache):
        for index, timestep in enumerate(timesteps):
            if stop():
                break
            if rows.changes and index:
                embeddings, added = rows.embeddings(index, device, dtype)
            # torch.cat for the diffusers layout keeps plain batches bit-identical to it
            model_input = torch.cat([latents] * (len(select) // len(jobs))) if same_rows else latents[select]
            model_input = scheduler.scale_model_input(model_input, timestep)
            if condition is not None:
                model_input = torch.cat([model_input, condition.to(device, dtype)[select]], dim=1)
            prediction = unet(model_input, timestep, encoder_hidden_states=embeddings,
                              timestep_cond=guidance.timestep_cond, added_cond_kwargs=added, return_dict=False)[0]
            latents = scheduler.step(rows.combine(prediction), timestep, latents, **keywords, return_dict=False)[0]
            if start is not None and start.mask is not None:
                latents = _keep_unmasked(scheduler, start, noise, latents, timesteps, index)
            done = index + 1
            if on_step is not None:
                on_step(index, len(timesteps), latents)
    if start is not None and start.mask is not None:
        mask = start.mask.to(device, dtype)
        latents = start.latents * (1 - mask) + latents * mask
    return latents, done


def _keep_unmasked(scheduler, start: Start, noise, latents, timesteps, index: int) -> torch.Tensor:
    """Inpainting: outside the mask, the init latents at the next step's noise level."""
    if index + 1 >= len(timesteps):
        return latents
    kept = scheduler.add_noise(start.latents, noise, timesteps[index + 1:index + 2].repeat(len(latents)))
    mask = start.mask.to(latents.device, latents.dtype)
    return kept * (1 - mask) + latents * mask

