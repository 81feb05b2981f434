"""Creating and training hypernetworks on a running server: checked in the caller's
thread, trained on the worker with the model it already holds, reported through the
progress state (loss history, newest preview picture), and added to the library.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from ..errors import HypernetError
from .jobs import Job, JobContext


@dataclass
class CreateForm:
    """The webui's create form (contract §6), plus our own options."""

    name: str
    sizes: tuple = (768, 320, 640, 1280)
    layer_structure: tuple = (1.0, 2.0, 1.0)
    activation: str = "linear"
    weight_init: str = "Normal"
    layer_norm: bool = False
    use_dropout: bool = False
    dropout_structure: tuple = (0.0, 0.0, 0.0)
    activate_output: bool = False
    optional_info: str | None = None
    overwrite: bool = False
    file_format: str = "pt"
    seed: int | None = None


# the webui's biggest usual network (1, 2, 4, 2, 1 on 768/320/640/1280) has 110 M
MAX_CREATE_PARAMETERS = 500_000_000


def _parameters(form: CreateForm) -> int:
    """Weights and biases of the network the form asks for (a key and a value MLP per size)."""
    total = 0
    for size in form.sizes:
        widths = [int(size * factor) for factor in form.layer_structure]
        total += 2 * sum(a * b + b for a, b in zip(widths, widths[1:]))
    return total


def create(service, form: CreateForm) -> Path:
    """Write the new file into the user's library folder and list it."""
    from ..creation import create_hypernetwork

    count = _parameters(form)
    if count > MAX_CREATE_PARAMETERS:  # built in the request's thread: it must not take the machine
        raise HypernetError(f"that network would have {count:,} parameters, more than the server creates "
                            f"({MAX_CREATE_PARAMETERS:,}); use smaller sizes or layer structure")
    with service.create_lock:
        path, _ = create_hypernetwork(
            form.name, service.paths.hypernet_dir, sizes=form.sizes, layer_structure=form.layer_structure,
            activation=form.activation, weight_init=form.weight_init, layer_norm=form.layer_norm,
            dropout_structure=form.dropout_structure if form.use_dropout else None,
            activate_output=form.activate_output, optional_info=form.optional_info, file_format=form.file_format,
            overwrite=form.overwrite, seed=form.seed)
        service.library.refresh()
    return path


def _target(service, name: str) -> tuple[Path, Path]:
    """(source file, output file): a packaged demo network is never overwritten, its
    trained copy goes to the user's folder."""
    from ..loading import PACKAGED_LIBRARY

    entry = service.resolve_hypernetwork(name)
    if entry.root is not None and Path(entry.root).resolve() == PACKAGED_LIBRARY.resolve():
        return entry.path, service.paths.hypernet_dir / entry.path.name
    return entry.path, entry.path


def _check_limits(limits, config) -> None:
    """The bounds txt2img has (`Limits`), for the training batch and size."""
    problems = limits.batch_problems(config.batch_size, config.width, config.height,
                                     names=("batch_size", "training_width", "training_height"), more="gradient_step")
    if problems:
        raise HypernetError("; ".join(problems))


def train(service, name: str, config) -> Job:
    """Queue a training run of library network `name`; the job's result is a
    `TrainingResult`. Inputs (data folder, template, schedule) are checked now."""
    from ..training.schedule import parse_schedule
    from ..training.trainer import check_inputs

    source, output = _target(service, name)
    # as the webui trains: with the clip skip set for generation, and the embeddings folder
    config = config.replace(clip_skip=service.options.get("CLIP_stop_at_last_layers"),
                            embeddings_dir=config.embeddings_dir or service.paths.embeddings_dir).validate()
    _check_limits(service.limits, config)
    if config.run_dir is None:
        config = config.replace(run_dir=Path(config.log_dir) / datetime.date.today().isoformat() / output.stem)
    inputs = check_inputs(config)
    model = service.checkpoints.resolve(service.options.get("sd_model_checkpoint"))
    schedule_end = parse_schedule(config.learning_rate, config.max_steps).end_step
    images = Path(config.run_dir) / "images"

    def run(context: JobContext):
        from PIL import Image

        from ..formats import load
        from ..training import train as train_network

        generator = service._ensure_model(model, context)
        network = load(source)
        messages: list[str] = []
        context.update(job="train-hypernetwork", job_no=network.step, job_count=schedule_end,
                       textinfo=f"training {name}: preparing")
        newest = {"path": None}

        def on_step(info) -> None:
            losses = context.state.losses
            with context.lock:
                losses.append((info.step, info.loss))
            textinfo = (f"Loss: {info.loss:.7f}<br/>Step: {info.step}<br/>"
                        f"Last prompt: {info.prompts[0] if info.prompts else ''}")
            preview = None
            if images.is_dir():
                found = max(images.glob("*.png"), key=lambda p: p.stat().st_mtime, default=None)
                if found is not None and found != newest["path"]:
                    newest["path"] = found
                    with Image.open(found) as picture:
                        preview = picture.copy()
            values = dict(job_no=info.step, textinfo=textinfo)
            if preview is not None:
                values["preview"] = preview
            context.update(**values)

        result = train_network(generator.pipe, network, config, output=output, model=generator.model, progress=False,
                               log=messages.append, on_step=on_step, stop=lambda: context.control.interrupted,
                               inputs=inputs)
        result.messages = [*messages, *[m for m in result.messages if m not in messages]]
        service.library.refresh()
        return result

    return service.jobs.submit("train-hypernetwork", run, interrupt_when_abandoned=False)


def describe(result) -> str:
    """One line for the API's `info` and the UI's status."""
    from ..training import describe_result

    if result is None:
        raise HypernetError("no training result")
    return describe_result(result)
