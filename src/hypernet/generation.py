"""Generation: a prompt with `<hypernet:NAME:M>` tags in, images with infotext out.

A `Generator` owns one loaded diffusers pipeline (never mutated: hypernetworks are
applied per call through `attention.activate`) and a `Library` to find networks by name.
Each `Request` carries its own networks via its prompt's tags, so two requests with
different networks can share one loaded model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import attention
from .errors import HypernetError
from .folding import FoldCache
from .memory import MemoryLimit, check as check_memory
from .prompt_encoders import PromptEncoders
from .network import Hypernetwork
from .request import MAX_SEED, SEED_LIMIT, Request, batch_key, group_requests  # noqa: F401  (re-exported: part of this module's interface)
from .samplers import make_scheduler


class NonFiniteError(HypernetError):
    """Sampling produced NaN or infinite values; the message names the likely cause."""


@dataclass
class StepInfo:
    """Where sampling is, for progress displays: 0-based `batch`, 1-based `step`."""

    batch: int
    batch_count: int
    step: int
    steps: int
    latents: "torch.Tensor"


@dataclass
class Control:
    """Steers a running `generate` from another thread: `interrupted` ends sampling after
    the current step (the batch in progress is decoded as it is, later batches are not
    started); `skipped` does the same for the batch in progress only. `on_step` is
    called after every denoising step."""

    interrupted: bool = False
    skipped: bool = False
    on_step: Callable[[StepInfo], None] | None = None


@dataclass
class Result:
    image: "object"  # PIL.Image.Image
    seed: int
    prompt: str
    negative_prompt: str
    networks: list[tuple[str, float]]
    infotext: str
    parameters: dict = field(default_factory=dict)
    subseed: int | None = None
    steps_done: int | None = None  # fewer than the request's steps: interrupted or skipped

    @property
    def finished(self) -> bool:
        return self.steps_done is None or self.steps_done >= int(self.parameters.get("Steps", 0))


@dataclass
class ModelInfo:
    name: str
    hash: str | None = None


class Generator:
    """Generates images with a loaded pipeline; hypernetworks come from `library`.

    Hypernetworks are applied per request: affine ones folded into the attention weights
    for the request (originals put back after), others through attention processors that
    are installed on first need and stay (inert while no network is active: the UNet
    computes exactly as before); `close()` (or leaving a `with` block) puts the original
    processors back. The pipeline's scheduler is swapped per request and restored after.
    A request that would need more memory than `memory_limit` allows is refused before
    anything is allocated."""

    def __init__(self, pipe, library=None, model: ModelInfo | None = None, clip_skip: int = 1,
                 lora_dir=None, embeddings_dir=None, fold: bool = True, memory_limit: MemoryLimit | None = None):
        from .extra_networks import LoraSet

        self.pipe = pipe
        self.library = library
        self.model = model or ModelInfo(name="model")
        self.clip_skip = clip_skip
        self.fold = fold  # affine hypernetworks folded into the attention weights (hypernet.folding)
        self._fold_cache = FoldCache()
        self.memory_limit = memory_limit or MemoryLimit()
        self.loras = LoraSet(pipe, lora_dir)
        self.embeddings_dir = embeddings_dir
        self.warnings: list[str] = []
        self.encoders = PromptEncoders(pipe, embeddings_dir, self.warnings)
        self._installed_here = attention.installed_chain(pipe.unet) is None
        # One generation at a time on this pipeline: folding swaps weights into the shared
        # UNet for the duration of a pass, so a second thread waits rather than interferes.
        self._running = threading.RLock()
        self._attention_widths = set(attention.attention_widths(pipe.unet))

    def close(self) -> None:
        """Hand the pipeline back: original attention processors (if installed here)."""
        if self._installed_here:
            attention.uninstall(self.pipe.unet)
            self._installed_here = False

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- networks -------------------------------------------------------------------
    def resolve_networks(self, prompt: str, negative_prompt: str = ""):
        """(prompt text, negative text, hypernetworks [(name, network, m)], LoRAs [(name, m)]):
        the texts without tags, and the networks their tags name, in prompt order.

        Unlike the webui, tags in the negative prompt are honoured too (they join after
        the positive prompt's), an unknown name is an error naming the closest existing
        names, and a bad multiplier is an error pointing at the tag."""
        from .prompt import extract_networks_pair, strip_comments

        text, negative_text, tags = extract_networks_pair(strip_comments(prompt), strip_comments(negative_prompt))
        hypernetworks, loras = [], []
        for kind, name, multiplier in tags:
            if kind == "lora":
                loras.append((name, float(multiplier)))
                continue
            if self.library is None:
                raise HypernetError(f"<hypernet:{name}> needs a hypernetwork library folder (--hypernet-dir)")
            hypernetworks.append((name, self.library.load(name), float(multiplier)))
        return text, negative_text, hypernetworks, loras

    def _warn_if_unused(self, name: str, network: Hypernetwork) -> None:
        """The webui silently applies nothing when no size of a file is a width of the
        loaded UNet (an SD 1.x file on SDXL, say); say so, once per name."""
        if self._attention_widths.intersection(network.sizes):
            return
        from .inspection import describe_families, fitting_families

        message = (f"hypernetwork {name!r} changes nothing on this model: its sizes "
                   f"{', '.join(map(str, network.sizes))} are none of the model's attention widths "
                   f"{', '.join(map(str, sorted(self._attention_widths)))} (the file fits "
                   f"{describe_families(fitting_families(network.sizes))})")
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def prompt_encoder(self):
        """Webui-style conditioning (emphasis, 75-token chunks, BREAK, prompt editing)."""
        return self.prompt_encoder_for(self.clip_skip)

    def prompt_encoder_for(self, clip_skip: int):
        return self.encoders.for_clip_skip(clip_skip)

    def reload_embeddings(self) -> None:
        """Read the embeddings folder again on the next request (safe from another thread)."""
        self.encoders.reload()

    # -- generation -------------------------------------------------------------------
    @property
    def sdxl(self) -> bool:
        """An SDXL pipeline: two text encoders, the pooled vector and size conditioning."""
        from .prompt.sdxl import is_sdxl_pipeline

        return is_sdxl_pipeline(self.pipe)

    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * self.pipe.vae_scale_factor

    def generate(self, request: Request, networks: Sequence[tuple[Hypernetwork, float]] = (), progress: bool = True,
                 on_result: Callable[[Result], None] | None = None, control: Control | None = None) -> list[Result]:
        """All images of a request; seeds follow the webui (seed, seed+1, ...).
        With `control`, another thread can follow the steps and interrupt or skip."""
        request = request.validated(self.native_size, max(8, self.pipe.vae_scale_factor))
        self.check_memory(request)
        first = self._prompted(request.prompt, request.negative_prompt, networks)
        second = None
        if request.hires is not None:
            second = self._prompted(request.hires.prompt or request.prompt,
                                    request.hires.negative_prompt or request.negative_prompt, networks)
        control = control or Control()
        results = []
        for batch in range(request.batch_count):
            if control.interrupted:
                break
            control.skipped = False
            seeds = [request.seed + batch * request.batch_size + i for i in range(request.batch_size)]
            description = f"batch {batch + 1}/{request.batch_count}" if request.batch_count > 1 else "sampling"
            with self._running:
                images, steps_done = self._batch(request, seeds, first, second, progress, description, control, batch)
            for position, (image, seed) in enumerate(zip(images, seeds)):
                result = self._result(image, seed, request, first.labels, position, steps_done)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        return results

    def generate_together(self, requests: Sequence[Request], progress: bool = True,
                          control: Control | None = None) -> list[list[Result]]:
        """Several txt2img requests as one UNet batch, each image through its own prompt,
        seed and hypernetwork chain (`attention.activate_rows`): what lets a server batch
        the requests of different users. Same pixels as each request alone (within fp32
        rounding, when the prompts have the same number of 75-token chunks). The requests
        must agree on what one batch shares (`batch_key`); `group_requests` sorts a mixed
        list into such groups. Returns each request's results, in order."""
        from .together import generate_together

        return generate_together(self, requests, progress, control or Control())

    def _prompted(self, prompt: str, negative_prompt: str, networks=()) -> "_Prompted":
        text, negative_text, named, loras = self.resolve_networks(prompt, negative_prompt)
        chain = tuple((network, multiplier) for _, network, multiplier in named) + tuple(networks)
        labels = [(name, multiplier) for name, _, multiplier in named] + [(n.name, m) for n, m in networks]
        for (name, _), (network, _) in zip(labels, chain):
            self._warn_if_unused(name, network)
        return _Prompted(text, negative_text, chain, labels, loras)

    def _batch(self, request: Request, seeds, first: "_Prompted", second: "_Prompted | None", progress: bool,
               description: str, control: Control, batch: int):
        """(pictures, steps run) for one batch: the first pass (from noise, or from the
        init picture), the hires pass when asked for, decoded and finished."""
        from .latents import decode

        pipe = self.pipe
        settings = request.img2img
        noise = self._noise(request, seeds, self._latent_shape(request.width, request.height))
        prepared = start = condition = None
        if settings is not None or self._inpainting_model:
            from . import img2img

            prepared = img2img.prepare(settings, request.width, request.height) if settings is not None else None
            start = img2img.start(pipe, prepared, settings, len(seeds), noise) if prepared is not None else None
            condition = img2img.inpaint_condition(pipe, prepared, len(seeds), (request.width, request.height))
        with self.loras.activate(first.loras):
            latents, done, complete = self._pass(request, first, seeds, noise, request.steps, request.cfg_scale,
                                                 request.sampler, request.schedule, start, condition, progress,
                                                 description, control, batch)
        if request.hires is not None and complete:
            from . import hires
            from .sampling import Start

            settings = request.hires
            width, height = settings.target(request.width, request.height, max(8, pipe.vae_scale_factor))
            with self.loras.activate(second.loras):
                latents = hires.upscale(pipe, latents, settings, width, height)
                noise = self._noise(request, seeds, self._latent_shape(width, height))
                if self._inpainting_model:
                    from .img2img import inpaint_condition

                    condition = inpaint_condition(pipe, None, len(seeds), (width, height))
                steps = settings.steps or request.steps
                jobs = self._jobs(request, second, seeds, noise, steps, first_pass_steps=request.steps)
                latents, done, complete = self._pass(
                    request, second, seeds, noise, steps,
                    request.cfg_scale if settings.cfg_scale is None else settings.cfg_scale,
                    settings.sampler or request.sampler, request.schedule if settings.sampler is None else None,
                    Start(latents, settings.denoising_strength), condition, progress, "hires", control, batch,
                    jobs=jobs)
        images = decode(pipe, latents, [torch.Generator("cpu").manual_seed(seed) for seed in seeds])
        if prepared is not None:
            images = [prepared.finish(image) for image in images]
        return images, request.steps if complete else done

    @property
    def _inpainting_model(self) -> bool:
        """A UNet that takes the mask and the masked picture besides the latents (9 channels)."""
        return self.pipe.unet.config.in_channels != self.pipe.vae.config.latent_channels

    def _latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        factor = self.pipe.vae_scale_factor
        return self.pipe.vae.config.latent_channels, height // factor, width // factor

    def check_memory(self, request: Request, limit: MemoryLimit | None = None) -> None:
        """Raise `MemoryLimitError` when `request` would need more memory than `limit`
        (default: this generator's `memory_limit`) allows."""
        width = request.width or self.native_size
        height = request.height or self.native_size
        cfg_scale = request.cfg_scale
        if request.hires is not None:  # the second pass is the larger one
            width, height = request.hires.target(width, height, max(8, self.pipe.vae_scale_factor))
            cfg_scale = max(cfg_scale, request.hires.cfg_scale or cfg_scale)
        check_memory(self.pipe, width, height, request.batch_size, cfg_scale, limit or self.memory_limit)

    def _noise(self, request: Request, seeds, shape) -> torch.Tensor:
        from .noise import seed_noise

        return seed_noise(request, seeds, shape)

    def _jobs(self, request: Request, prompted: "_Prompted", seeds, noise, steps: int,
              first_pass_steps: int | None = None) -> list:
        """One `sampling.ImageJob` per seed: the prompt pair encoded for `steps` (for the
        hires pass, `first_pass_steps` as the webui schedules prompt editing there)."""
        from .sampling import ImageJob

        encoder = self.prompt_encoder_for(request.clip_skip or self.clip_skip)
        with torch.no_grad():
            parts = encoder.composable_conditioning(prompted.text, steps, first_pass_steps)
            negative = encoder.negative_conditioning(prompted.negative_text, steps, first_pass_steps)
        sizes = None
        if self.sdxl:  # the webui conditions every pass on the request's own size
            from .prompt.sdxl import time_ids

            sizes = time_ids(request.height, request.width)
        return [ImageJob(noise[index], torch.Generator("cpu").manual_seed(seed), parts, negative, prompted.chain,
                         time_ids=sizes)
                for index, seed in enumerate(seeds)]

    def _pass(self, request: Request, prompted: "_Prompted", seeds, noise, steps: int, cfg_scale: float, sampler: str,
              schedule, start, condition, progress: bool, description: str, control: Control, batch: int, jobs=None):
        """(latents, steps run, whether all ran) of one denoising pass over a batch
        (`jobs`: the images' own prompts and chains; default: `prompted` for every seed)."""
        from .sampling import denoise

        pipe = self.pipe
        scheduler = make_scheduler(sampler, pipe.scheduler.config, schedule)
        jobs = jobs or self._jobs(request, prompted, seeds, noise, steps)
        with torch.no_grad():
            empty = self.prompt_encoder_for(request.clip_skip or self.clip_skip).empty()
        chain = tuple(entry for job in jobs for entry in job.chain)
        pipe.set_progress_bar_config(disable=not progress, desc=description, leave=False)
        bar = pipe.progress_bar(total=0)
        total = 0

        def on_step(index: int, count: int, latents: torch.Tensor) -> None:
            nonlocal total
            if bar.total != count:
                bar.total = total = count
                bar.refresh()
            bar.update()
            if not torch.isfinite(latents).all():
                raise NonFiniteError(self._non_finite_message(request, index + 1, chain))
            if control.on_step is not None:
                control.on_step(StepInfo(batch, request.batch_count, index + 1, count, latents))

        with bar, torch.no_grad():
            latents, done = denoise(pipe.unet, scheduler, jobs, steps, self._guidance(cfg_scale, len(seeds)), empty,
                                    start=start, condition=condition, fold=self.fold, cache=self._fold_cache,
                                    on_step=on_step, stop=lambda: control.interrupted or control.skipped)
        return latents, done, not (control.interrupted or control.skipped) or done >= total

    def _guidance(self, cfg_scale: float, count: int):
        from .sampling import Guidance

        timestep_cond = None
        if getattr(self.pipe.unet.config, "time_cond_proj_dim", None) is not None:  # LCM-distilled models
            scale = torch.tensor(cfg_scale - 1).repeat(count)
            timestep_cond = self.pipe.get_guidance_scale_embedding(
                scale, embedding_dim=self.pipe.unet.config.time_cond_proj_dim).to(self.pipe.unet.device,
                                                                                  self.pipe.unet.dtype)
        return Guidance(cfg_scale, timestep_cond)

    @staticmethod
    def _non_finite_message(request: Request, step: int, chain) -> str:
        """The webui says "a tensor with all NaNs was produced"; this says what to change."""
        active = [(network.name, multiplier) for network, multiplier in chain]
        causes = [f"<hypernet:{name}:{multiplier:g}>" for name, multiplier in active if abs(multiplier) > 2]
        if abs(request.cfg_scale) > 30:
            causes.append(f"CFG scale {request.cfg_scale:g}")
        hint = (f"likely cause: {', '.join(causes)}; lower it" if causes else
                "a hypernetwork in the prompt may be broken (check it with `hypernet inspect`), "
                "or the model does not work in this precision")
        return f"sampling produced NaN or infinite values at step {step} of {request.steps}: {hint}. No image was made."

    def _result(self, image, seed: int, request: Request, labels, position: int, steps_done: int) -> Result:
        from .infotext import format_infotext
        from .result_fields import parameters

        fields = parameters(request, seed, position, steps_done, self.model, self.clip_skip, labels)
        infotext = format_infotext(request.prompt, request.negative_prompt, fields)
        subseed = request.subseed + (seed - request.seed)  # the one drawn, as the webui reports it
        return Result(image, seed, request.prompt, request.negative_prompt, labels, infotext, fields,
                      subseed=subseed, steps_done=steps_done)


@dataclass
class _Prompted:
    """A prompt pair read for one pass: texts without tags, the hypernetwork chain, the
    infotext labels of the networks, and the LoRA tags."""

    text: str
    negative_text: str
    chain: tuple
    labels: list
    loras: list
