"""Generation: a prompt with `<hypernet:NAME:M>` tags in, images with infotext out.

A `Generator` owns one loaded diffusers pipeline (never mutated: hypernetworks are
applied per call through `attention.activate`) and a `Library` to find networks by name.
Each `Request` carries its own networks via its prompt's tags, so two requests with
different networks can share one loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import attention
from .errors import HypernetError
from .folding import FoldCache
from .memory import MemoryLimit, check as check_memory
from .network import Hypernetwork
from .request import MAX_SEED, SEED_LIMIT, Request  # noqa: F401  (re-exported: part of this module's interface)
from .samplers import make_scheduler, split_name


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
        self._prompt_encoders: dict[int, object] = {}
        self._embeddings = None
        self._installed_here = attention.installed_chain(pipe.unet) is None

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
        return self.prompt_encoder_for(self.clip_skip)

    def prompt_encoder_for(self, clip_skip: int):
        # Reads each shared field once into a local: `reload_embeddings` may run in another
        # thread (the server's refresh route) while a request is being encoded.
        encoder = self._prompt_encoders.get(clip_skip)
        if encoder is None:
            from .extra_networks import load_embeddings
            from .prompt.conditioning import PromptEncoder

            embeddings = self._embeddings
            if embeddings is None:
                width = self.pipe.text_encoder.config.hidden_size
                embeddings, warnings = load_embeddings(self.embeddings_dir, width)
                self.warnings.extend(warnings)
                self._embeddings = embeddings
            encoder = PromptEncoder(self.pipe.tokenizer, self.pipe.text_encoder, clip_skip=clip_skip,
                                    embeddings=embeddings)
            self._prompt_encoders = {**self._prompt_encoders, clip_skip: encoder}
        encoder._empty = None  # a LoRA on the text encoder changes even the empty prompt
        return encoder

    def reload_embeddings(self) -> None:
        """Read the embeddings folder again on the next request (safe from another thread)."""
        self._embeddings = None
        self._prompt_encoders = {}

    # -- generation -------------------------------------------------------------------
    @property
    def native_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * self.pipe.vae_scale_factor

    def generate(self, request: Request, networks: Sequence[tuple[Hypernetwork, float]] = (), progress: bool = True,
                 on_result: Callable[[Result], None] | None = None, control: Control | None = None) -> list[Result]:
        """All images of a request; seeds follow the webui (seed, seed+1, ...).
        With `control`, another thread can follow the steps and interrupt or skip."""
        request = request.validated(self.native_size, max(8, self.pipe.vae_scale_factor))
        self.check_memory(request)
        text, negative_text, named, loras = self.resolve_networks(request.prompt, request.negative_prompt)
        chain = [(network, multiplier) for _, network, multiplier in named] + list(networks)
        labels = [(name, multiplier) for name, _, multiplier in named] + [(n.name, m) for n, m in networks]
        scheduler = make_scheduler(request.sampler, self.pipe.scheduler.config, request.schedule)
        control = control or Control()
        results = []
        original_scheduler = self.pipe.scheduler
        try:
            with self.loras.activate(loras), attention.activate(self.pipe.unet, chain, fold=self.fold,
                                                                            cache=self._fold_cache):
                for batch in range(request.batch_count):
                    if control.interrupted:
                        break
                    control.skipped = False
                    seeds = [request.seed + batch * request.batch_size + i for i in range(request.batch_size)]
                    description = f"batch {batch + 1}/{request.batch_count}" if request.batch_count > 1 else "sampling"
                    images, steps_done = self._sample(text, negative_text, request, seeds, scheduler, progress,
                                                      description, control, batch, chain)
                    for position, (image, seed) in enumerate(zip(images, seeds)):
                        result = self._result(image, seed, request, labels, position, steps_done)
                        results.append(result)
                        if on_result is not None:
                            on_result(result)
        finally:
            self.pipe.scheduler = original_scheduler
        return results

    def check_memory(self, request: Request, limit: MemoryLimit | None = None) -> None:
        """Raise `MemoryLimitError` when `request` would need more memory than `limit`
        (default: this generator's `memory_limit`) allows."""
        width = request.width or self.native_size
        height = request.height or self.native_size
        check_memory(self.pipe, width, height, request.batch_size, request.cfg_scale, limit or self.memory_limit)

    def _noise(self, request: Request, seeds, shape) -> torch.Tensor:
        """Per-image CPU noise: the same seed gives the same image on any device and batch
        size. A variation seed is blended in spherically, as the webui does."""
        noises = []
        for index, seed in enumerate(seeds):
            noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
            if request.subseed_strength > 0:
                subseed = request.subseed + (seed - request.seed)
                other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed))
                noise = _slerp(request.subseed_strength, noise, other)
            noises.append(noise)
        return torch.stack(noises)

    def _sample(self, text, negative_text, request: Request, seeds, scheduler, progress: bool, description: str,
                control: Control, batch: int, chain=()):
        pipe = self.pipe
        device = pipe.unet.device
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        shape = (pipe.unet.config.in_channels, request.height // pipe.vae_scale_factor, request.width // pipe.vae_scale_factor)
        latents = self._noise(request, seeds, shape).to(device, pipe.unet.dtype)
        clip_skip = request.clip_skip or self.clip_skip
        conditioning = self._conditioning(text, negative_text, request.steps, len(seeds), clip_skip)
        cond, uncond = conditioning(0)
        pipe.scheduler = scheduler
        pipe.set_progress_bar_config(disable=not progress, desc=description, leave=False)
        steps_done = 0

        def on_step_end(pipe_, step, timestep, tensors):
            nonlocal steps_done
            steps_done = step + 1
            if not torch.isfinite(tensors["latents"]).all():
                raise NonFiniteError(self._non_finite_message(request, step + 1, chain))
            if conditioning.changes and step + 1 < request.steps:
                next_cond, next_uncond = conditioning(step + 1)
                tensors["prompt_embeds"] = torch.cat([next_uncond, next_cond]) if request.cfg_scale > 1 else next_cond
            if control.on_step is not None:
                control.on_step(StepInfo(batch, request.batch_count, step + 1, request.steps, tensors["latents"]))
            if control.interrupted or control.skipped:
                pipe_._interrupt = True  # diffusers skips the remaining steps, then decodes
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
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=["prompt_embeds", "latents"],
            )
        return output.images, steps_done

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

    def _conditioning(self, text: str, negative_text: str, steps: int, count: int, clip_skip: int) -> "_Conditioning":
        from .prompt.conditioning import conditioning_at, pad_cond_uncond, stack_conds

        encoder = self.prompt_encoder_for(clip_skip)
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

    def _result(self, image, seed: int, request: Request, labels, position: int, steps_done: int) -> Result:
        from .infotext import format_infotext

        sampler, schedule = split_name(request.sampler, request.schedule)
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
        if request.subseed_strength > 0:
            parameters["Variation seed"] = request.subseed + (seed - request.seed)
            parameters["Variation seed strength"] = request.subseed_strength
        if (request.clip_skip or self.clip_skip) > 1:
            parameters["Clip skip"] = request.clip_skip or self.clip_skip
        if steps_done < request.steps:
            parameters["Interrupted at step"] = steps_done
        if labels:
            parameters["Hypernetworks"] = ", ".join(f"{name}: {multiplier:g}" for name, multiplier in labels)
        parameters = {k: v for k, v in parameters.items() if v is not None}
        infotext = format_infotext(request.prompt, request.negative_prompt, parameters)
        subseed = request.subseed + (seed - request.seed)  # the one drawn, as the webui reports it
        return Result(image, seed, request.prompt, request.negative_prompt, labels, infotext, parameters,
                      subseed=subseed, steps_done=steps_done)


@dataclass
class _Conditioning:
    """(cond, uncond) for a 0-based step; `changes` when prompt editing switches it."""

    at: Callable
    changes: bool

    def __call__(self, step: int):
        return self.at(step)


def _slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (keeps the noise's norm)."""
    low_unit = low / low.norm()
    high_unit = high / high.norm()
    dot = (low_unit * high_unit).sum().clamp(-1.0, 1.0)
    if dot.abs() > 0.9995:
        return (1 - strength) * low + strength * high
    omega = torch.acos(dot)
    return (torch.sin((1 - strength) * omega) * low + torch.sin(strength * omega) * high) / torch.sin(omega)
