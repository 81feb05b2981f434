"""Training a hypernetwork on a diffusers Stable Diffusion pipeline (contract §7).

`train(pipe, network, config)` runs in two phases:

1. `prepare()` checks everything that can go wrong before the first step: options, the
   schedule strings, the template, the dataset (every image decoded), the network's
   feature sizes against the model's attention widths, the batch size. It writes nothing.
2. The run: the base model is frozen (`requires_grad_(False)` on UNet, VAE and text
   encoder, so backward computes input gradients only), latents and text encodings are
   cached, VAE and text encoder leave the accelerator, and AdamW updates the network.
   Checkpoints are atomic and resumable exactly; `stop()` returning True (the CLI's
   first Ctrl-C) ends the run after the current step and saves; a KeyboardInterrupt
   saves too unless it lands inside a weight update; a non-finite loss skips its step
   and keeps the last good weights. Signals are the caller's: the library installs no
   handler.

The pipeline is handed back as it came: requires_grad flags, train/eval modes, devices,
gradient checkpointing, scheduler and attention processors are restored on exit, even on
error.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .. import attention
from ..errors import HypernetConfigError, HypernetError
from ..network import Hypernetwork
from . import checkpoints, conditioning, dataset as data, loss as loss_module, prompts, randomness, report, sharing
from .config import TrainingConfig
from .schedule import Schedule, parse_schedule

OPTIMIZER = "AdamW"


class TrainingError(HypernetError):
    """A run that cannot start or cannot go on; the message says what to change."""


# -- results -------------------------------------------------------------------------------

@dataclass
class StepInfo:
    """Passed to `on_step` after every optimizer step (main process)."""

    step: int
    loss: float
    learning_rate: float
    epoch: int
    epoch_step: int
    steps_per_epoch: int
    prompts: list[str]
    network: Hypernetwork


@dataclass
class TrainingResult:
    network: Hypernetwork
    start_step: int
    steps_done: int  # the network's step at the end
    stop_reason: str  # finished | interrupted | non-finite loss | already finished
    seed: int
    output: Path | None = None
    run_dir: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    skipped_steps: int = 0
    seconds: float = 0.0
    resumed_exactly: bool | None = None  # None: not a resume

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None


# -- the plan: everything checked before anything is written -------------------------------

@dataclass
class Plan:
    config: TrainingConfig
    network: Hypernetwork
    name: str
    seed: int
    start_step: int
    position: int  # micro-batches consumed before the first step of this run
    learning_rate: Schedule
    clip: Schedule | None
    template_lines: list[str]
    sources: list[data.ImageSource]
    batch_size: int  # per process
    gradient_accumulation: int
    processes: int
    rank: int
    target_size: tuple[int, int]
    pixel_multiple: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    scale_loss: bool
    checkpointing: str
    output: Path | None
    run_dir: Path
    suffix: str
    resume: checkpoints.ResumePoint | None
    fingerprint: dict
    messages: list[str]
    optimizer_state: dict | None = None
    optimizer_name: str = OPTIMIZER
    scaler_state: dict | None = None
    skipped_steps: int = 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.processes

    @property
    def batches_per_epoch(self) -> int:
        return max(1, len(self.sources) // self.global_batch)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.batches_per_epoch // self.gradient_accumulation)

    @property
    def micro_per_epoch(self) -> int:
        return self.steps_per_epoch * self.gradient_accumulation

    @property
    def end_step(self) -> int:
        return self.learning_rate.end_step

    @property
    def finished_already(self) -> bool:
        return self.start_step >= self.end_step


def _check_resumable(network: Hypernetwork, source: Hypernetwork, path: Path) -> None:
    if sorted(network.sizes) != sorted(source.sizes) or network.structure != source.structure:
        raise TrainingError(
            f"{path}: cannot resume: its structure (sizes {source.sizes}, {source.structure}) differs from the network "
            f"being trained (sizes {network.sizes}, {network.structure})"
        )


def _default_run_dir(config: TrainingConfig, name: str, resume: checkpoints.ResumePoint | None) -> Path:
    if config.run_dir is not None:
        return Path(config.run_dir)
    if resume is not None:
        if resume.state and resume.state.get("run_dir") and Path(resume.state["run_dir"]).is_dir():
            return Path(resume.state["run_dir"])
        if resume.path.parent.name == "hypernetworks" and (resume.path.parent.parent / report.SETTINGS_NAME).exists():
            return resume.path.parent.parent
    return Path(config.log_dir) / datetime.date.today().isoformat() / name


def _fingerprint(config: TrainingConfig, sources, lines, batch_size, accumulation, processes, size) -> dict:
    listing = hashlib.sha256()
    for source in sources:
        listing.update(f"{source.path.name}\0{source.path.stat().st_size}\0{source.caption}\n".encode("utf-8"))
    return {
        "dataset": listing.hexdigest()[:16],
        "images": len(sources),
        "template": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16],
        "batch_size": batch_size,
        "gradient_accumulation": accumulation,
        "processes": processes,
        "size": list(size),
        "resize": config.resize,
        "flip": config.flip,
        "latent_sampling": config.latent_sampling,
        "shuffle_tags": config.shuffle_tags,
        "tag_dropout": config.tag_dropout,
        "caption_dropout": config.caption_dropout,
        "use_alpha_weight": config.use_alpha_weight,
        "clip_skip": config.clip_skip,
        "learning_rate": config.learning_rate,
        "clip": f"{config.clip_grad}:{config.clip_value}" if config.clip_grad != "disabled" else "disabled",
    }


def _precision(config: TrainingConfig, unet, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to scale the loss). Master weights stay fp32."""
    weights = next(unet.parameters()).dtype
    if config.precision == "auto":
        autocast = {torch.float16: torch.float16, torch.bfloat16: torch.bfloat16}.get(weights)
    else:
        autocast = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[config.precision]
    return autocast, torch.float16 in (autocast, weights)


@dataclass
class Inputs:
    """What `check_inputs` found: everything a run needs that does not depend on the model."""

    sources: list[data.ImageSource]
    template_lines: list[str]
    learning_rate: Schedule
    clip: Schedule | None


def check_inputs(config: TrainingConfig) -> Inputs:
    """The checks that need no model: options, schedule strings, template, dataset (every
    image decoded). A command line runs them before loading a checkpoint."""
    config.validate()
    if config.preview_every:
        from ..samplers import split_name

        split_name(config.preview.sampler)  # an unknown sampler fails now, not at the first preview
    learning_rate = parse_schedule(config.learning_rate, config.max_steps, 0, "learning rate")
    clip = parse_schedule(config.clip_value, config.max_steps, 0, "clip value") if config.clip_grad != "disabled" else None
    template = prompts.find_template(config.template, prompts.template_folders(config.template_dirs))
    lines = prompts.read_template(template)
    sources = data.scan(config.data, config.filename_word_regex, config.filename_join)
    return Inputs(sources, lines, learning_rate, clip)


def prepare(pipe, network: Hypernetwork, config: TrainingConfig, *, output=None, resume=None,
            processes: int = 1, rank: int = 0, inputs: Inputs | None = None) -> Plan:
    """Check a run without writing anything; raises with a message naming what is wrong."""
    inputs = inputs or check_inputs(config)
    messages: list[str] = []
    if not isinstance(network, Hypernetwork):
        raise TrainingError(f"expected a Hypernetwork to train, got {type(network).__name__}")
    name = network.source_path.stem if network.source_path is not None else network.name

    # where the run starts from: an explicit file, else the network's own file (webui)
    resume_point = None
    if resume is not None:
        resume_point = checkpoints.read_resume_point(resume)
        _check_resumable(network, resume_point.network, Path(resume))
    elif network.source_path is not None and Path(network.source_path).exists() and network.step > 0:
        resume_point = checkpoints.read_resume_point(network.source_path, network=network)
    start_step = int(resume_point.network.step if resume_point is not None else network.step)
    state = resume_point.state if resume_point else None
    if resume_point is not None and start_step > 0 and not resume_point.exact:
        messages.append(f"continuing from step {start_step} of {resume_point.path.name}, not exactly as the run that "
                        f"wrote it would have: {'; '.join(resume_point.notes)}")

    seed = config.seed if config.seed is not None else (int(state["seed"]) if state else randomness.new_seed())
    learning_rate, clip, lines, sources = inputs.learning_rate, inputs.clip, inputs.template_lines, inputs.sources

    widths = attention.attention_widths(pipe.unet)
    matching = [size for size in network.sizes if size in widths]
    if not matching:
        raise TrainingError(
            f"hypernetwork {name!r} has sizes {', '.join(map(str, network.sizes))} but this model's attention layers "
            f"take {', '.join(map(str, widths))}: it would change nothing (an SD 1.x network on an SD 2.x model, "
            f"or the other way round?). Create one with --sizes {','.join(map(str, widths))}"
        )
    unused = [size for size in network.sizes if size not in widths]
    if unused:
        messages.append(f"sizes {', '.join(map(str, unused))} of {name!r} match no attention layer of this model; "
                        "they are saved unchanged")

    scale_factor = int(getattr(pipe, "vae_scale_factor", 8))
    native = int(pipe.unet.config.sample_size) * scale_factor
    target = (config.width or native, config.height or native)
    for label, value in zip(("width", "height"), target):
        if value % scale_factor:
            raise HypernetConfigError(f"training {label} {value} must be a multiple of {scale_factor} (the VAE's scale factor)")
    for label, value in (("width", config.preview.width), ("height", config.preview.height)):
        if config.preview_every and value is not None and value % scale_factor:
            raise HypernetConfigError(f"preview {label} {value} must be a multiple of {scale_factor} (the VAE's scale factor)")

    batch_size, accumulation = config.batch_size, config.gradient_accumulation
    if batch_size * processes > len(sources):
        clamped = max(1, len(sources) // processes)
        messages.append(f"batch size {batch_size}{f' x {processes} processes' if processes > 1 else ''} is larger than "
                        f"the dataset ({len(sources)} images); using batch size {clamped}")
        batch_size = clamped
    batches = max(1, len(sources) // (batch_size * processes))
    if accumulation > batches:
        messages.append(f"gradient accumulation {accumulation} is more than the {batches} batches of an epoch; using {batches}")
        accumulation = batches

    fingerprint = _fingerprint(config, sources, lines, batch_size, accumulation, processes, target)
    position = start_step * accumulation
    skipped = 0
    if state:
        position = int(state.get("position", position))
        skipped = int(state.get("skipped_steps", 0))
        before = state.get("fingerprint", {})
        changed = [f"{key} {before.get(key)!r} -> {value!r}" for key, value in fingerprint.items() if before.get(key) != value]
        if config.seed is not None and int(state.get("seed", seed)) != seed:
            changed.append(f"seed {state.get('seed')} -> {seed}")
        if changed:
            messages.append("the resumed run differs from the one that wrote the checkpoint (" + "; ".join(changed) +
                            "); it continues, but will not end as the uninterrupted run would have")

    device = next(pipe.unet.parameters()).device
    autocast, scale_loss = _precision(config, pipe.unet, device)
    if output is None and network.source_path is not None:
        output = network.source_path
    output = Path(output) if output is not None else None
    suffix = output.suffix if output is not None and output.suffix in (".pt", ".safetensors") else ".pt"
    if resume is not None and resume_point.network is not network:
        with torch.no_grad():  # every check passed: take the checkpoint's weights
            network.load_state_dict(resume_point.network.state_dict())
        network.metadata.step = start_step
    optimizer_state, optimizer_name = None, OPTIMIZER
    if resume_point is not None and resume_point.optimizer is not None:
        optimizer_state = resume_point.optimizer.state_dict
        optimizer_name = resume_point.optimizer.optimizer_name
    return Plan(
        config=config, network=network, name=name, seed=seed, start_step=start_step, position=position,
        learning_rate=learning_rate, clip=clip, template_lines=lines, sources=sources, batch_size=batch_size,
        gradient_accumulation=accumulation, processes=processes, rank=rank, target_size=target,
        pixel_multiple=scale_factor, device=device, autocast_dtype=autocast, scale_loss=scale_loss,
        checkpointing=config.gradient_checkpointing, output=output,
        run_dir=_default_run_dir(config, name, resume_point), suffix=suffix, resume=resume_point,
        fingerprint=fingerprint, messages=messages, optimizer_state=optimizer_state, optimizer_name=optimizer_name,
        scaler_state=(state or {}).get("scaler"), skipped_steps=skipped,
    )


# -- the pipeline, borrowed and handed back --------------------------------------------------

@contextlib.contextmanager
def borrowed(pipe):
    """Freeze the base model for the block and restore everything it touched afterwards."""
    components = [c for c in (pipe.unet, pipe.vae, pipe.text_encoder) if c is not None]
    grads = [(p, p.requires_grad) for c in components for p in c.parameters()]
    modes = [(m, m.training) for c in components for m in c.modules()]
    devices = [(c, next(c.parameters()).device) for c in components]
    checkpointing = getattr(pipe.unet, "is_gradient_checkpointing", False)
    scheduler = pipe.scheduler
    processors = dict(pipe.unet.attn_processors)  # training installs the hypernetwork hook-in
    try:
        for component in components:
            component.requires_grad_(False)
            component.eval()
        yield
    finally:
        for parameter, flag in grads:
            parameter.requires_grad_(flag)
        for module, flag in modes:
            module.training = flag
        for component, device in devices:
            if next(component.parameters()).device != device:
                component.to(device)
        if getattr(pipe.unet, "is_gradient_checkpointing", False) != checkpointing:
            (pipe.unet.enable_gradient_checkpointing if checkpointing else pipe.unet.disable_gradient_checkpointing)()
        pipe.scheduler = scheduler
        if any(pipe.unet.attn_processors[name] is not processor for name, processor in processors.items()):
            pipe.unet.set_attn_processor(dict(processors))


def _never() -> bool:
    return False


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _optimizer_class(name: str, messages: list[str]):
    candidate = getattr(torch.optim, name, None)
    if isinstance(candidate, type) and issubclass(candidate, torch.optim.Optimizer):
        return candidate
    messages.append(f"optimizer {name!r} from the side-car is not a torch.optim optimizer; using {OPTIMIZER}")
    return torch.optim.AdamW


IMPLEMENTATION_KEYS = ("fused", "foreach")


def make_optimizer(optimizer_class, parameters, learning_rate: float):
    """The optimizer, with torch's fused kernel where it has one (AdamW on CPU and CUDA:
    about 6x faster than the per-tensor loop for a 22M-parameter network)."""
    if optimizer_class in (torch.optim.AdamW, torch.optim.Adam):
        try:
            return optimizer_class(parameters, lr=learning_rate, fused=True)
        except (RuntimeError, ValueError, TypeError):
            pass
    return optimizer_class(parameters, lr=learning_rate)


# -- the run -------------------------------------------------------------------------------------

class _Run:
    """One training run's working state; lives for one `train()` call."""

    def __init__(self, pipe, plan: Plan, model, accelerator, progress: bool, log, on_step,
                 stop: Callable[[], bool]):
        self.pipe = pipe
        self.plan = plan
        self.config = plan.config
        self.network = plan.network
        self.model = model
        self.accelerator = accelerator
        self.progress = progress
        self.log = log
        self.on_step = on_step
        self.stop = stop
        self.main = plan.rank == 0
        self.result = TrainingResult(plan.network, plan.start_step, plan.start_step, "finished", plan.seed,
                                     run_dir=plan.run_dir, messages=list(plan.messages), skipped_steps=plan.skipped_steps,
                                     resumed_exactly=plan.resume.exact if plan.resume and plan.start_step else None)
        self.step = plan.start_step
        self.position = plan.position
        self._epoch_cache: tuple[int, list[list[int]]] | None = None
        self.last_prompts: list[str] = []
        self.saved_steps: set[int] = set()
        self.tensorboard = None

    def say(self, message: str) -> None:
        self.result.messages.append(message)
        if self.main:
            self.log(message)

    # -- setup ---------------------------------------------------------------------------
    def write_settings(self) -> None:
        plan = self.plan
        settings = {
            "name": plan.name,
            "config": self.config.to_json(),
            "seed": plan.seed,
            "start_step": plan.start_step,
            "end_step": plan.end_step,
            "batch_size": plan.batch_size,
            "gradient_accumulation": plan.gradient_accumulation,
            "processes": plan.processes,
            "images": len(plan.sources),
            "size": list(plan.target_size),
            "steps_per_epoch": plan.steps_per_epoch,
            "device": str(plan.device),
            "autocast": str(plan.autocast_dtype).replace("torch.", "") if plan.autocast_dtype else None,
            "loss_scaling": plan.scale_loss,
            "network": {"sizes": self.network.sizes, "structure": repr(self.network.structure),
                        "parameters": self.network.parameter_count()},
            "model": {"name": getattr(self.model, "name", None), "hash": getattr(self.model, "hash", None)},
            "output": str(plan.output) if plan.output else None,
            "resumed_from": str(plan.resume.path) if plan.resume and plan.start_step else None,
            "fingerprint": plan.fingerprint,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        path = plan.run_dir / report.SETTINGS_NAME
        if path.exists():  # a resumed run keeps the first run's settings and adds its own
            path = plan.run_dir / f"settings-from-{plan.start_step}.json"
        report.write_json(path, settings)

    def encode_dataset(self) -> data.Dataset:
        plan, config, pipe = self.plan, self.config, self.pipe
        pipe.vae.to(plan.device)
        encoded = data.encode(plan.sources, pipe.vae, mode=config.resize, target=plan.target_size,
                              multiple=plan.pixel_multiple, sampling=config.latent_sampling, flip=config.flip,
                              use_alpha_weight=config.use_alpha_weight, seed=plan.seed)
        pipe.vae.to("cpu")  # off the accelerator for the rest of the run (previews bring it back)
        if not config.prompts_vary:
            for example in encoded.examples:
                example.line = prompts.pick_line(plan.template_lines, randomness.generator(plan.seed, "template", example.index))
        return encoded

    def fixed_prompt(self, example: data.Example) -> str:
        return prompts.fill_template(example.line, example.source.caption, self.plan.name)

    # -- data stream -------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, data.epoch_batches(self.dataset.groups, self.plan.global_batch, self.plan.seed, epoch))
        return self._epoch_cache[1]

    def micro_batch(self, position: int):
        plan = self.plan
        epoch, index = divmod(position, plan.micro_per_epoch)
        batch = self.batches(epoch)[index]
        first = plan.rank * plan.batch_size
        latents, noises, timesteps, texts, weights = [], [], [], [], []
        for slot, item in enumerate(batch[first:first + plan.batch_size], start=first):
            example = self.dataset.examples[item]
            generator = randomness.generator(plan.seed, "example", position, slot)
            variant = int(torch.randint(2, (1,), generator=generator)) if self.config.flip else 0
            timesteps.append(int(torch.randint(self.noise.timesteps, (1,), generator=generator)))
            noises.append(torch.randn(example.latent_shape, generator=generator))
            latents.append(data.sample_latents(example, variant, generator))
            if example.line is not None:
                texts.append(self.fixed_prompt(example))
            else:
                texts.append(prompts.training_prompt(plan.template_lines, example.source.caption, plan.name, generator,
                                                     self.config.shuffle_tags, self.config.tag_dropout))
            if self.config.caption_dropout > 0 and float(torch.rand((), generator=generator)) < self.config.caption_dropout:
                texts[-1] = prompts.UNCONDITIONAL_PROMPT
            if example.weight is not None:
                weights.append(example.weight[variant])
        if not latents:
            return None
        device = plan.device
        return {
            "latents": torch.stack(latents).to(device),
            "noise": torch.stack(noises).to(device),
            "timesteps": torch.tensor(timesteps, device=device),
            "prompts": texts,
            "weight": torch.stack(weights).to(device) if weights else None,
            "items": batch,
            "epoch": epoch,
        }

    # -- one optimizer step ---------------------------------------------------------------------
    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.plan.processes > 1:
            return self.accelerator.reduce(tensor, reduction="mean")
        return tensor

    def sync_gradients(self) -> None:
        if self.plan.processes <= 1:
            return
        for parameter in self.parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            parameter.grad = self.accelerator.reduce(parameter.grad, reduction="mean")

    def one_step(self):
        """Run the micro-batches of one optimizer step. Returns (outcome, loss, prompts,
        epoch) with outcome 'stepped', 'scaler-skip', 'non-finite loss' or
        'non-finite gradients'."""
        plan = self.plan
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=plan.device)
        texts, epoch = [], 0
        bad_local = torch.zeros((), device=plan.device)
        unet_dtype = next(self.pipe.unet.parameters()).dtype
        for micro in range(plan.gradient_accumulation):
            position = self.position + micro
            batch = self.micro_batch(position)
            if batch is None:
                continue
            texts, epoch = batch["prompts"], batch["epoch"]
            conditioning_states = self.text(batch["prompts"], plan.device, unet_dtype)
            torch.manual_seed(randomness.stream_seed(plan.seed, "dropout", position, plan.rank))
            if self.shared is not None and not getattr(self.pipe.unet, "is_gradient_checkpointing", False):
                self.shared.begin(conditioning_states)
            try:
                with torch.autocast(plan.device.type, dtype=plan.autocast_dtype or torch.float32,
                                    enabled=plan.autocast_dtype is not None):
                    loss = loss_module.diffusion_loss(self.pipe.unet, self.noise, batch["latents"], batch["noise"],
                                                      batch["timesteps"], conditioning_states, batch["weight"])
                if not torch.isfinite(loss.detach()):
                    bad_local += 1
                    self.bad_batch = batch
                    break
                self.scaler.scale(loss / plan.gradient_accumulation).backward()
            finally:
                if self.shared is not None:
                    self.shared.forget()
            total += loss.detach() / plan.gradient_accumulation
        bad = self.reduce(bad_local)
        if bad.item() > 0:
            return "non-finite loss", float("nan"), texts, epoch
        self.sync_gradients()
        loss_value = float(self.reduce(total).item())
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)  # clip real gradients, not loss-scaled ones
            self.clip()
            scale = self.scaler.get_scale()
            self.updating = True
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return ("stepped" if self.scaler.get_scale() >= scale else "scaler-skip"), loss_value, texts, epoch
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return "non-finite gradients", loss_value, texts, epoch
        self.clip()
        self.updating = True
        self.optimizer.step()
        return "stepped", loss_value, texts, epoch

    def clip(self) -> None:
        if self.plan.clip is None:
            return
        threshold = self.plan.clip.rate_at(self.step)
        if self.config.clip_grad == "value":
            torch.nn.utils.clip_grad_value_(self.parameters, threshold)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters, threshold)

    # -- saving ----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "step": self.step,
            "position": self.position,
            "seed": self.plan.seed,
            "skipped_steps": self.result.skipped_steps,
            "scaler": {k: v for k, v in self.scaler.state_dict().items()} if self.scaler.is_enabled() else None,
            "fingerprint": self.plan.fingerprint,
            "run_dir": str(self.plan.run_dir.resolve()),
            "name": self.plan.name,
            "saved": datetime.datetime.now().isoformat(timespec="seconds"),
        }

    def stamp(self) -> None:
        metadata = self.network.metadata
        metadata.step = self.step
        metadata.name = self.plan.name
        if self.model is not None:
            metadata.sd_checkpoint = getattr(self.model, "hash", None)
            metadata.sd_checkpoint_name = getattr(self.model, "name", None)

    def save(self, final: bool = False) -> None:
        if not self.main:
            return
        self.stamp()
        optimizer = self.optimizer if self.config.save_optimizer_state else None
        if self.step not in self.saved_steps:
            path = self.plan.run_dir / "hypernetworks" / checkpoints.checkpoint_name(self.plan.name, self.step, self.plan.suffix)
            checkpoints.save_checkpoint(self.network, path, optimizer, self.state())
            self.saved_steps.add(self.step)
            self.result.checkpoints.append(path)
        if final and self.plan.output is not None:
            checkpoints.save_checkpoint(self.network, self.plan.output, optimizer, self.state())
            self.result.output = self.plan.output
        report.draw_loss_plot(self.loss_log.history, self.plan.run_dir / report.PLOT_NAME, title=f"{self.plan.name} loss")

    def preview(self) -> None:
        if not self.main:
            return
        from .preview import render

        path = self.plan.run_dir / "images" / f"{self.plan.name}-{self.step}.png"
        devices = {name: next(getattr(self.pipe, name).parameters()).device for name in ("vae", "text_encoder")}
        self.pipe.vae.to(self.plan.device)
        self.pipe.text_encoder.to(self.plan.device)
        try:
            render(self.pipe, self.network, self.config, (self.last_prompts or [""])[0], self.plan.seed,
                   self.plan.target_size, path, model=self.model)
        finally:
            for name, device in devices.items():
                getattr(self.pipe, name).to(device)
        self.result.previews.append(path)
        if self.tensorboard is not None:
            import numpy as np
            from PIL import Image

            with Image.open(path) as image:
                self.tensorboard.add_image("preview", np.asarray(image.convert("RGB")), self.step, dataformats="HWC")

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        plan, config, pipe = self.plan, self.config, self.pipe
        started = time.perf_counter()
        if self.main:
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            self.write_settings()
            self.loss_log = report.LossLog(plan.run_dir / report.CSV_NAME, config.csv_every, plan.steps_per_epoch,
                                           plan.start_step)
            if config.tensorboard:
                self.tensorboard, why = report.open_tensorboard(plan.run_dir / "tensorboard")
                if why:
                    self.say(why)
        else:
            self.loss_log = report.LossLog(None, 0, plan.steps_per_epoch, plan.start_step)
        self.noise = loss_module.noise_schedule(pipe.scheduler.config)
        self.dataset = self.encode_dataset()
        encoder = conditioning.prompt_encoder(pipe, config.clip_skip, config.embeddings_dir, self.say)
        self.text = conditioning.TextConditioning(encoder, config.text_cache_size)
        pipe.text_encoder.to(plan.device)
        if not config.prompts_vary:
            fixed = [self.fixed_prompt(e) for e in self.dataset.examples]
            self.text.precompute(fixed + ([prompts.UNCONDITIONAL_PROMPT] if config.caption_dropout > 0 else []))
            pipe.text_encoder.to("cpu")  # every prompt is cached: the encoder leaves the accelerator

        network = self.network
        network.to(device=plan.device, dtype=torch.float32)
        network.requires_grad_(True)
        network.train()
        self.parameters = [p for p in network.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(_optimizer_class(plan.optimizer_name, self.result.messages), self.parameters,
                                        plan.learning_rate.rate_at(self.step))
        if plan.optimizer_state is not None:
            implementation = {key: self.optimizer.param_groups[0].get(key) for key in IMPLEMENTATION_KEYS}
            try:
                self.optimizer.load_state_dict(plan.optimizer_state)
            except (ValueError, KeyError, RuntimeError) as error:
                self.say(f"the optimizer state does not fit this network ({error}); starting a fresh {OPTIMIZER}")
            for group in self.optimizer.param_groups:  # the saved state is portable; keep this machine's kernel
                group.update(implementation)
        self.scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.scale_loss)
        if plan.scaler_state and self.scaler.is_enabled():
            self.scaler.load_state_dict(plan.scaler_state)
        if plan.checkpointing == "on":
            pipe.unet.enable_gradient_checkpointing()
        elif plan.checkpointing == "off" and getattr(pipe.unet, "is_gradient_checkpointing", False):
            pipe.unet.disable_gradient_checkpointing()

        self.shared = sharing.SharedContextNetwork(network) if sharing.can_share(network, plan.checkpointing == "on") else None
        bar = None
        if self.main:
            from tqdm import tqdm

            bar = tqdm(total=plan.end_step, initial=self.step, desc=f"Training {plan.name}", unit="step",
                       disable=not self.progress, dynamic_ncols=True, file=sys.stderr)
        bad_in_row = 0
        self.updating = False
        try:
            with attention.activate(pipe.unet, [(self.shared or network, 1.0)]):
                while self.step < plan.end_step and not self.stop_agreed():
                    learning_rate = plan.learning_rate.rate_at(self.step)
                    for group in self.optimizer.param_groups:
                        group["lr"] = learning_rate
                    outcome, loss_value, texts, epoch = self.step_with_memory_fallback()
                    self.position += plan.gradient_accumulation
                    if outcome != "stepped":
                        self.updating = False
                        self.result.skipped_steps += 1
                        if outcome == "scaler-skip":
                            continue
                        bad_in_row += 1
                        self.report_non_finite(outcome, learning_rate)
                        if bad_in_row >= config.nonfinite_patience:
                            self.result.stop_reason = "non-finite loss"
                            self.say(f"training stopped: {bad_in_row} steps in a row had a non-finite {outcome.split()[-1]}; "
                                     f"the weights of step {self.step} (the last good ones) are saved. Lower the learning "
                                     f"rate (now {learning_rate:g}) or enable gradient clipping "
                                     f"(clip_grad='norm', clip_value='1.0')")
                            break
                        continue
                    bad_in_row = 0
                    self.step += 1
                    network.metadata.step = self.step
                    self.updating = False
                    self.last_prompts = texts
                    self.after_step(loss_value, learning_rate, epoch, bar)
        except KeyboardInterrupt:
            self.result.stop_reason = "interrupted"
            if self.updating:
                self.say("interrupted during a weight update: these weights are not saved; the last checkpoint holds the "
                         "latest complete step")
                self.finish(bar, started, save=False)
                return self.result
        except Exception as error:
            if bar is not None:
                bar.close()
            if not self.updating and self.step > self.plan.start_step:
                self.save()  # a resumable checkpoint of the last complete step; the output file is left alone
                self.say(f"training failed at step {self.step + 1} ({type(error).__name__}: {error}); the last complete "
                         f"step is saved in {self.result.checkpoints[-1]}; resume from it with --resume")
            self.network.eval()
            raise
        if self.stop() and self.result.stop_reason == "finished" and self.step < plan.end_step:
            self.result.stop_reason = "interrupted"
        self.finish(bar, started, save=True)
        return self.result

    def stop_agreed(self) -> bool:
        """Whether to stop before the next step; all processes of a data-parallel run
        decide together (a Ctrl-C reaches them at slightly different moments)."""
        wanted = bool(self.stop())
        if self.plan.processes <= 1:
            return wanted
        flag = torch.tensor(float(wanted), device=self.plan.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def step_with_memory_fallback(self):
        while True:
            try:
                return self.one_step()
            except torch.OutOfMemoryError:
                unet = self.pipe.unet
                self.optimizer.zero_grad(set_to_none=True)
                if self.plan.checkpointing != "auto" or getattr(unet, "is_gradient_checkpointing", False):
                    raise TrainingError(
                        "out of accelerator memory; lower the batch size, or the training size, or use gradient "
                        "accumulation" + ("" if self.plan.checkpointing == "on" else " or --gradient-checkpointing on")
                    ) from None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                unet.enable_gradient_checkpointing()
                self.say("out of memory: gradient checkpointing is now on (slower steps, much less memory)")

    def report_non_finite(self, outcome: str, learning_rate: float) -> None:
        batch = getattr(self, "bad_batch", None)
        images = ""
        if batch is not None and outcome == "non-finite loss":
            names = [self.dataset.examples[i].source.path.name for i in batch["items"]]
            images = f" (images {', '.join(names)})"
        self.say(f"step {self.step + 1}: {outcome}{images}; the step was skipped and the weights kept. If this repeats, "
                 f"lower the learning rate (now {learning_rate:g})"
                 + (" or the clip value" if self.plan.clip is not None else " or enable gradient clipping"))

    def after_step(self, loss_value: float, learning_rate: float, epoch: int, bar) -> None:
        plan, config = self.plan, self.config
        step = self.step
        self.result.losses.append((step, loss_value))
        epoch_index, epoch_step = divmod(step - 1, plan.steps_per_epoch)
        if self.main:
            self.loss_log.add(step, loss_value, learning_rate)
            if self.tensorboard is not None:
                self.tensorboard.add_scalar("loss", loss_value, step)
                self.tensorboard.add_scalar("learning_rate", learning_rate, step)
            if bar is not None:
                bar.set_description(f"Training {plan.name} [epoch {epoch_index}: {epoch_step + 1}/{plan.steps_per_epoch}]",
                                    refresh=False)
                bar.set_postfix(loss=f"{loss_value:.7f}", lr=f"{learning_rate:.3g}", refresh=False)
                bar.update(1)
        if config.save_every and step % config.save_every == 0 and step < plan.end_step:
            self.save()
        if config.preview_every and step % config.preview_every == 0:
            self.preview()
        if self.processes_sync_needed(step):
            self.accelerator.wait_for_everyone()
        if self.on_step is not None and self.main:
            self.on_step(StepInfo(step, loss_value, learning_rate, epoch_index, epoch_step + 1, plan.steps_per_epoch,
                                  list(self.last_prompts), self.network))

    def processes_sync_needed(self, step: int) -> bool:
        config = self.config
        return self.plan.processes > 1 and (
            (config.save_every and step % config.save_every == 0) or (config.preview_every and step % config.preview_every == 0)
        )

    def finish(self, bar, started: float, save: bool) -> None:
        if bar is not None:
            bar.close()
        if save:
            self.save(final=True)
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.network.eval()
        self.network.requires_grad_(False)
        self.result.steps_done = self.step
        self.result.seconds = time.perf_counter() - started


def train(pipe, network: Hypernetwork, config: TrainingConfig, *, output=None, resume=None, model=None,
          accelerator=None, progress: bool = True, log: Callable[[str], None] | None = None,
          on_step: Callable[[StepInfo], None] | None = None, stop: Callable[[], bool] | None = None,
          inputs: Inputs | None = None) -> TrainingResult:
    """Train `network` (in place) on `pipe` as `config` says.

    `output`: where the final network goes (default: the file `network` was loaded from,
    as the webui overwrites it; None for a network never saved: only the run folder).
    `resume`: a checkpoint to continue from (its weights, `.optim` and `.train.json`).
    A network loaded from a file with `step > 0` continues from that file's side-cars.
    `model`: a `ModelInfo` (name, hash) recorded as the file's `sd_checkpoint`.
    `accelerator`: an `accelerate.Accelerator` for data-parallel runs (made when None).
    `stop`: polled after every step; True ends the run cleanly (saved). The CLI's
    Ctrl-C handler sets it; the library installs no signal handler.
    `inputs`: the result of `check_inputs(config)`, when the caller already ran it.
    """
    log = log or _default_log
    processes, rank = 1, 0
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=next(pipe.unet.parameters()).device.type == "cpu")
    processes, rank = int(accelerator.num_processes), int(accelerator.process_index)
    plan = prepare(pipe, network, config, output=output, resume=resume, processes=processes, rank=rank, inputs=inputs)
    if plan.finished_already:
        for message in plan.messages:
            log(message)
        reason = (f"nothing to do: {plan.name!r} is at step {plan.start_step} and the learning-rate schedule "
                  f"{config.learning_rate!r} ends at step {plan.end_step} (max steps {config.max_steps})")
        log(reason)
        return TrainingResult(network, plan.start_step, plan.start_step, "already finished", plan.seed,
                              messages=[*plan.messages, reason])
    for message in plan.messages:
        if rank == 0:
            log(message)
    devices = [plan.device] if plan.device.type == "cuda" else []
    with borrowed(pipe), torch.random.fork_rng(devices=devices):
        run = _Run(pipe, plan, model, accelerator, progress, log, on_step, stop or _never)
        return run.run()


def describe_result(result: TrainingResult) -> str:
    """A short human summary, for the CLI and logs."""
    lines = [f"{result.stop_reason}: step {result.start_step} -> {result.steps_done} in {result.seconds:.1f} s"]
    if result.last_loss is not None and math.isfinite(result.last_loss):
        lines.append(f"last loss {result.last_loss:.7f}")
    if result.output:
        lines.append(f"saved {result.output}")
    if result.run_dir:
        lines.append(f"run folder {result.run_dir}")
    return "; ".join(lines)
