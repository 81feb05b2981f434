"""The plan of a training run: every check that can fail, done before anything is written
(options, schedules, template, dataset, the network against the model, batch sizes, where
the run resumes from, which run folder it goes to, whether its outputs can be written)."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import attention
from ..errors import HypernetConfigError, HypernetError, HypernetFileError
from ..fileio import short_hash
from ..network import Hypernetwork
from . import checkpoints, dataset as data, prompts, randomness, run_files, run_folder
from .config import TrainingConfig
from .schedule import Schedule, parse_schedule

OPTIMIZER = "AdamW"


class TrainingError(HypernetError):
    """A run that cannot start or cannot go on; the message says what to change."""


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
    command: dict = field(default_factory=dict)  # what makes a re-run "the same command" (run_folder)
    settings_file: Path | None = None  # an unfinished segment's settings, restarted from its own start
    final_save_pending: bool = False  # finished, but the output does not hold the final network yet

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
        if resume.path.parent.name == "hypernetworks" and (resume.path.parent.parent / run_files.SETTINGS_NAME).exists():
            return resume.path.parent.parent
    return Path(config.log_dir) / datetime.date.today().isoformat() / name


def _command(config: TrainingConfig, network: Hypernetwork, output: Path | None, resume) -> dict:
    source = network.source_path
    command = {"config": config.to_json(), "output": str(output) if output else None,
               "source": short_hash(source) if source is not None and Path(source).is_file() else None,
               "resume": str(Path(resume).resolve()) if resume is not None else None}
    return json.loads(json.dumps(command, default=str))


def _holds(output: Path, point: checkpoints.ResumePoint) -> bool:
    """Whether `output` already is the network of `point` (its final save happened)."""
    from ..formats import load

    if output.exists() and output.resolve() == point.path.resolve():
        return True
    try:
        saved = load(output)
    except (HypernetError, OSError):
        return False
    mine, theirs = point.network.state_dict(), saved.state_dict()
    return saved.step == point.network.step and mine.keys() == theirs.keys() and all(
        torch.equal(mine[key], theirs[key]) for key in mine)


def _check_outputs(run_dir: Path, output: Path | None) -> None:
    """Every place the run writes, checked before its first step (not after the last)."""
    run_folder.check_writable(run_dir, f"the run folder {run_dir}")
    if output is not None:
        if output.is_dir():
            raise HypernetFileError(output, "is a folder; the output must be a file path")
        run_folder.check_writable(output.parent, f"the output file {output}")


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


def _batch_words(batch_size, processes) -> str:
    if batch_size is None:
        return "unknown"
    return f"{batch_size * processes} ({processes} processes x {batch_size})" if processes > 1 else str(batch_size)


def _continued_batch(state: dict | None, placement: run_folder.Placement) -> tuple[int, int] | None:
    """(batch size per process, processes) of the run being continued: its checkpoint's,
    else its settings' (an unfinished run restarted from its own start)."""
    before = (state or {}).get("fingerprint") or {}
    batch = before.get("batch_size"), before.get("processes", 1)
    if all(isinstance(n, int) and n > 0 for n in batch):
        return batch
    return placement.batch


def _batch_for(given: int, processes: int, continued: tuple[int, int], messages: list[str]) -> int:
    """The batch size per process of a run that continues another one. The global batch
    (per process x processes) decides the data order and the gradient, so a run continued
    with another process count keeps it: each process takes its share. A --batch-size
    other than the continued run's is a wish for another batch, and is kept."""
    written_batch, written_processes = continued
    if written_processes == processes or given != written_batch:
        return given
    total = written_batch * written_processes
    if total % processes:
        messages.append(f"the run continued here had a global batch of {total} ({written_processes} processes x "
                        f"{written_batch}), which {processes} processes cannot share evenly; each takes {given}, a "
                        f"global batch of {given * processes}")
        return given
    share = total // processes
    messages.append(f"the run continued here had {written_processes} process{'es' if written_processes > 1 else ''} x "
                    f"batch {written_batch}; with {processes} process{'es' if processes > 1 else ''} each takes "
                    f"{share}, so the global batch stays {total} (give another --batch-size to change it)")
    return share


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

    # where the run goes: the unfinished run of this same command is continued; no run's files are overwritten
    if output is None and network.source_path is not None:
        output = network.source_path
    output = Path(output) if output is not None else None
    command = _command(config, network, output, resume)
    search = run_folder.other_runs(config.log_dir, name) if config.run_dir is None and resume is None else ()
    placement = run_folder.place(_default_run_dir(config, name, resume_point), name, start_step, command, resume, search)
    messages.extend(placement.messages)
    if placement.continue_from is not None:
        resume = placement.continue_from
        resume_point = checkpoints.read_resume_point(resume)
        _check_resumable(network, resume_point.network, resume)
        start_step = int(resume_point.network.step)
    state = resume_point.state if resume_point else None
    if resume_point is not None and start_step > 0 and not resume_point.exact:
        messages.append(f"continuing from step {start_step} of {resume_point.path.name}, not exactly as the run that "
                        f"wrote it would have: {'; '.join(resume_point.notes)}")
    pending = (start_step >= inputs.learning_rate.end_step and output is not None and resume_point is not None
               and not _holds(output, resume_point))
    if start_step < inputs.learning_rate.end_step or pending:
        _check_outputs(placement.run_dir, output)

    seed = config.seed if config.seed is not None else (
        int(state["seed"]) if state else placement.seed if placement.seed is not None else randomness.new_seed())
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
    continued = _continued_batch(state, placement) if start_step > 0 or placement.segment is not None else None
    if continued is not None:
        batch_size = _batch_for(batch_size, processes, continued, messages)
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
        changed = [f"{key} {before.get(key)!r} -> {value!r}" for key, value in fingerprint.items()
                   if key not in ("batch_size", "processes") and before.get(key) != value]
        written_by = (before.get("batch_size"), before.get("processes", 1))
        if written_by[0] is None or written_by[0] * written_by[1] != batch_size * processes:
            changed.append(f"global batch {_batch_words(*written_by)} -> {_batch_words(batch_size, processes)}")
        if config.seed is not None and int(state.get("seed", seed)) != seed:
            changed.append(f"seed {state.get('seed')} -> {seed}")
        if changed:
            messages.append("the resumed run differs from the one that wrote the checkpoint (" + "; ".join(changed) +
                            "); it continues, but will not end as the uninterrupted run would have")

    device = next(pipe.unet.parameters()).device
    autocast, scale_loss = _precision(config, pipe.unet, device)
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
        run_dir=placement.run_dir, suffix=suffix, resume=resume_point,
        fingerprint=fingerprint, messages=messages, optimizer_state=optimizer_state, optimizer_name=optimizer_name,
        scaler_state=(state or {}).get("scaler"), skipped_steps=skipped, command=command,
        settings_file=placement.segment, final_save_pending=pending,
    )

