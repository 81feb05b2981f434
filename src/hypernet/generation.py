"""Generation: a prompt with `<hypernet:NAME:M>` tags in, images with infotext out.

A `Generator` owns one loaded diffusers pipeline (never mutated: hypernetworks are
applied per call through `attention.activate`) and a `Library` to find networks by name.
Each `Request` carries its own networks via its prompt's tags, so two requests with
different networks can share one loaded model.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import attention
from .errors import HypernetError
from .network import Hypernetwork
from .samplers import DEFAULT_SAMPLER, infotext_name, make_scheduler

MAX_SEED = 2**32 - 1


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

    def validated(self, native_size: int, multiple: int) -> "Request":
        width = self.width or native_size
        height = self.height or native_size
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be at least 1 (got {self.steps})")
        if self.batch_size < 1 or self.batch_count < 1:
            problems.append(f"batch size and count must be at least 1 (got {self.batch_size}, {self.batch_count})")
        for label, value in (("width", width), ("height", height)):
            if value < multiple or value % multiple:
                problems.append(f"{label} {value} must be a positive multiple of {multiple}")
        if problems:
            raise HypernetError("; ".join(problems))
        seed = self.seed if self.seed is not None and self.seed >= 0 else random.randrange(MAX_SEED)
        return dataclasses.replace(self, width=width, height=height, seed=seed)


@dataclass
class Result:
    image: "object"  # PIL.Image.Image
    seed: int
    prompt: str
    negative_prompt: str
    networks: list[tuple[str, float]]
    infotext: str
    parameters: dict = field(default_factory=dict)


@dataclass
class ModelInfo:
    name: str
    hash: str | None = None


class Generator:
    """Generates images with a loaded pipeline; hypernetworks come from `library`."""

    def __init__(self, pipe, library=None, model: ModelInfo | None = None, clip_skip: int = 1,
                 lora_dir=None, embeddings_dir=None):
        from .extra_networks import LoraSet

        self.pipe = pipe
        self.library = library
        self.model = model or ModelInfo(name="model")
        self.clip_skip = clip_skip
        self.loras = LoraSet(pipe, lora_dir)
        self.embeddings_dir = embeddings_dir
        self.warnings: list[str] = []
        self._prompt_encoder = None
        attention.install(pipe.unet)

    # -- networks -------------------------------------------------------------------
    def resolve_networks(self, prompt: str, negative_prompt: str = ""):
        """(prompt text, negative text, hypernetworks [(name, network, m)], LoRAs [(name, m)]):
        the texts without tags, and the networks their tags name, in prompt order.

        Unlike the webui, tags in the negative prompt are honoured too (they join after
        the positive prompt's), an unknown name is an error naming the closest existing
        names, and a bad multiplier is an error pointing at the tag."""
        from .prompt import extract_networks_pair, split_and, strip_comments

        text, negative_text, tags = extract_networks_pair(strip_comments(prompt), strip_comments(negative_prompt))
        if len(split_and(text)) > 1:
            self.warnings.append("AND (composable diffusion) is not supported yet: the prompt is encoded as one text")
        hypernetworks, loras = [], []
        for kind, name, multiplier in tags:
            if kind == "lora":
                loras.append((name, float(multiplier)))
                continue
            if self.library is None:
                raise HypernetError(f"<hypernet:{name}> needs a hypernetwork library folder (--hypernet-dir)")
            hypernetworks.append((name, self.library.load(name), float(multiplier)))
        return text, negative_text, hypernetworks, loras

    @property
    def prompt_encoder(self):
        """Webui-style conditioning (emphasis, 75-token chunks, BREAK, prompt editing)."""
        if self._prompt_encoder is None:
            from .extra_networks import load_embeddings
            from .prompt.conditioning import PromptEncoder

            width = self.pipe.text_encoder.config.hidden_size
            embeddings, warnings = load_embeddings(self.embeddings_dir, width)
            self.warnings.extend(warnings)
            self._prompt_encoder = PromptEncoder(self.pipe.tokenizer, self.pipe.text_encoder, clip_skip=self.clip_skip,
                                                 embeddings=embeddings)
        self._prompt_encoder._empty = None  # a LoRA on the text encoder changes even the empty prompt
        return self._prompt_encoder

    # -- generation -------------------------------------------------------------------
    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * self.pipe.vae_scale_factor

    def generate(self, request: Request, networks: Sequence[tuple[Hypernetwork, float]] = (), progress: bool = True,
                 on_result: Callable[[Result], None] | None = None) -> list[Result]:
        """All images of a request; seeds follow the webui (seed, seed+1, ...)."""
        request = request.validated(self.native_size, max(8, self.pipe.vae_scale_factor))
        text, negative_text, named, loras = self.resolve_networks(request.prompt, request.negative_prompt)
        chain = [(network, multiplier) for _, network, multiplier in named] + list(networks)
        labels = [(name, multiplier) for name, _, multiplier in named] + [(n.name, m) for n, m in networks]
        scheduler = make_scheduler(request.sampler, self.pipe.scheduler.config, request.schedule)
        results = []
        with attention.activate(self.pipe.unet, chain), self.loras.activate(loras):
            for batch in range(request.batch_count):
                seeds = [request.seed + batch * request.batch_size + i for i in range(request.batch_size)]
                images = self._sample(text, negative_text, request, seeds, scheduler, progress,
                                      f"batch {batch + 1}/{request.batch_count}" if request.batch_count > 1 else "sampling")
                for position, (image, seed) in enumerate(zip(images, seeds)):
                    result = self._result(image, seed, request, labels, position)
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
        return results

    def _sample(self, text, negative_text, request: Request, seeds, scheduler, progress: bool, description: str):
        pipe = self.pipe
        device = pipe.unet.device
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        shape = (pipe.unet.config.in_channels, request.height // pipe.vae_scale_factor, request.width // pipe.vae_scale_factor)
        # per-image CPU noise: the same seed gives the same image on any device and batch size
        latents = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, pipe.unet.dtype)
        conditioning = self._conditioning(text, negative_text, request.steps, len(seeds))
        cond, uncond = conditioning(0)
        pipe.scheduler = scheduler
        pipe.set_progress_bar_config(disable=not progress, desc=description, leave=False)

        def next_step_conditioning(pipe_, step, timestep, tensors):
            if step + 1 < request.steps:
                next_cond, next_uncond = conditioning(step + 1)
                tensors["prompt_embeds"] = torch.cat([next_uncond, next_cond]) if request.cfg_scale > 1 else next_cond
            return tensors

        with torch.no_grad():
            output = pipe(
                prompt_embeds=cond,
                negative_prompt_embeds=uncond,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                height=request.height,
                width=request.width,
                latents=latents,
                generator=generators,
                output_type="pil",
                callback_on_step_end=next_step_conditioning if conditioning.changes else None,
                callback_on_step_end_tensor_inputs=["prompt_embeds"],
            )
        return output.images

    def _conditioning(self, text: str, negative_text: str, steps: int, count: int) -> "_Conditioning":
        from .prompt.conditioning import conditioning_at, pad_cond_uncond, stack_conds

        encoder = self.prompt_encoder
        dtype, device = self.pipe.unet.dtype, self.pipe.unet.device
        with torch.no_grad():
            positive = encoder.conditioning(text, steps)
            negative = encoder.conditioning(negative_text, steps)
            empty = encoder.empty()

        def at(step: int):
            cond = stack_conds([conditioning_at(positive, step)] * count)
            uncond = stack_conds([conditioning_at(negative, step)] * count)
            cond, uncond = pad_cond_uncond(cond, uncond, empty)  # diffusers batches both branches together
            return cond.to(device, dtype), uncond.to(device, dtype)

        return _Conditioning(at, changes=len(positive) > 1 or len(negative) > 1)

    def _result(self, image, seed: int, request: Request, labels, position: int) -> Result:
        from .infotext import format_infotext

        sampler, schedule = infotext_name(request.sampler, request.schedule)
        parameters = {
            "Steps": request.steps,
            "Sampler": sampler,
            "Schedule type": schedule,
            "CFG scale": request.cfg_scale,
            "Seed": seed,
            "Size": f"{request.width}x{request.height}",
            "Model hash": self.model.hash,
            "Model": self.model.name,
        }
        if request.batch_size > 1:
            parameters["Batch size"] = request.batch_size
            parameters["Batch pos"] = position
        if labels:
            parameters["Hypernetworks"] = ", ".join(f"{name}: {multiplier:g}" for name, multiplier in labels)
        parameters = {k: v for k, v in parameters.items() if v is not None}
        infotext = format_infotext(request.prompt, request.negative_prompt, parameters)
        return Result(image, seed, request.prompt, request.negative_prompt, labels, infotext, parameters)


@dataclass
class _Conditioning:
    """(cond, uncond) for a 0-based step; `changes` when prompt editing switches it."""

    at: Callable
    changes: bool

    def __call__(self, step: int):
        return self.at(step)


def save_results(results: Sequence[Result], folder) -> list[Path]:
    """PNG files `NNNNN-SEED.png` with the webui's `parameters` chunk, numbered after the
    files already in `folder` (never overwriting)."""
    from .infotext import write_png

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[:5]) for p in folder.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")]
    number = max(taken, default=-1) + 1
    paths = []
    for result in results:
        path = folder / f"{number:05d}-{result.seed}.png"
        write_png(result.image, path, result.infotext)
        paths.append(path)
        number += 1
    return paths


def request_from_infotext(text: str, **overrides) -> Request:
    """The request that reproduces an image from its PNG `parameters` text."""
    from .infotext import parse_infotext

    prompt, negative, parameters = parse_infotext(text)
    size = str(parameters.get("Size", "")).split("x")
    values = dict(
        prompt=prompt,
        negative_prompt=negative,
        steps=int(parameters.get("Steps", 20)),
        cfg_scale=float(parameters.get("CFG scale", 7.0)),
        seed=int(parameters.get("Seed", -1)),
        sampler=str(parameters.get("Sampler", DEFAULT_SAMPLER)),
        schedule=parameters.get("Schedule type"),
    )
    if len(size) == 2 and all(s.isdigit() for s in size):
        values.update(width=int(size[0]), height=int(size[1]))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Request(**values)
