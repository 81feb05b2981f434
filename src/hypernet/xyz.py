"""The X/Y/Z plot, as the webui's script draws it: every combination of up to three axes
of settings (hypernetwork, multiplier, sampler, steps, CFG, seed, Prompt S/R, checkpoint,
size, clip skip), one labelled grid per Z value, the grids side by side.

Parsing (`parse_axis`) is pure and needs no model; `xyz_plot` checks every value before
any image is made, runs the cells that need one model back to back (each model is loaded
once, through the caller's `generator_for_model`) and assembles the picture. Each cell's
`Result` carries its own infotext, so any cell reproduces with a single `generate`.
"""

from __future__ import annotations

import dataclasses
import random
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import HypernetError
from .request import MAX_SEED, Request
from .samplers import make_scheduler, split_name

from .xyz_axes import (  # noqa: F401  (re-exported: the plot's interface)
    DEFAULT_MODEL, KINDS, MAX_VALUES, Axis, AxisKind, axis_kind, axis_labels, parse_axis, parse_values, split_values,
)

_TAG = re.compile(r"<hypernet:([^:>]+)(?::[^>]*)?>")


# -- cells ----------------------------------------------------------------------------
@dataclass
class Cell:
    """One picture of the plot: its place (0-based x, y, z), model and request, and its
    `Result` once made. `model` None is the caller's usual model."""

    x: int
    y: int
    z: int
    model: object
    request: Request
    result: object = None
    settings: dict = field(default_factory=dict)  # {axis kind: value}, in the order x, y, z

    @property
    def labels(self) -> list[str]:
        return [KINDS[kind].label(value) for kind, value in self.settings.items()]


@dataclass
class XYZResult:
    image: object  # PIL image: the grids side by side
    cells: list[Cell]  # in grid order: z, then y, then x
    labels: tuple[list[str], list[str], list[str]]  # x, y, z
    grids: list = field(default_factory=list)  # one labelled grid per Z value

    @property
    def infotext(self) -> str:
        """The first cell's, as the webui puts on the grid."""
        return self.cells[0].result.infotext


def set_network(prompt: str, owned: Sequence[str], name: str | None, multiplier: float) -> str:
    """`prompt` with the tags of every name in `owned` replaced by `<hypernet:name:M>`
    (where the first of them was, else at the end); `name` None removes them."""
    from .library import format_multiplier

    tag = "" if name is None else f"<hypernet:{name}:{format_multiplier(multiplier)}>"
    spans = [m.span() for m in _TAG.finditer(prompt) if m.group(1) in owned]
    if not spans:
        return f"{prompt} {tag}".strip() if tag else prompt
    text, end = "", 0
    for number, (start, stop) in enumerate(spans):
        kept = prompt[end:start]
        if number or not tag:  # a removed tag takes one space before it along
            kept = kept[:-1] if kept.endswith(" ") else kept
        text += kept + ("" if number else tag)
        end = stop
    return (text + prompt[end:]).strip()


def set_multipliers(prompt: str, multiplier: float) -> str:
    """Every `<hypernet:NAME...>` tag of `prompt` at `multiplier`."""
    from .library import format_multiplier

    return _TAG.sub(lambda m: f"<hypernet:{m.group(1)}:{format_multiplier(multiplier)}>", prompt)


def cell_request(base: Request, settings: dict, axes: dict[str, Axis]) -> Request:
    """The request of one cell: `base` changed by `settings` ({kind: value})."""
    request = base
    if "prompt" in settings:
        search, value = axes["prompt"].values[0], settings["prompt"]
        request = dataclasses.replace(request, prompt=request.prompt.replace(search, value),
                                      negative_prompt=request.negative_prompt.replace(search, value))
    multiplier = settings.get("multiplier", 1.0)
    if "hypernet" in settings:
        owned = [name for name in axes["hypernet"].values if name is not None]
        request = dataclasses.replace(request, prompt=set_network(request.prompt, owned, settings["hypernet"], multiplier),
                                      negative_prompt=set_network(request.negative_prompt, owned, None, 1.0))
    elif "multiplier" in settings:
        request = dataclasses.replace(request, prompt=set_multipliers(request.prompt, multiplier),
                                      negative_prompt=set_multipliers(request.negative_prompt, multiplier))
    fields = {"sampler": "sampler", "steps": "steps", "cfg": "cfg_scale", "seed": "seed", "clip skip": "clip_skip"}
    changes = {fields[kind]: value for kind, value in settings.items() if kind in fields}
    if "size" in settings:
        changes.update(width=settings["size"][0], height=settings["size"][1])
    if "sampler" in settings and split_name(settings["sampler"])[1] != "Automatic":
        changes["schedule"] = None  # the value names its own schedule, which wins
    return dataclasses.replace(request, **changes)


def check_axes(base: Request, x: Axis | None, y: Axis | None, z: Axis | None, library=None) -> None:
    """Everything that can be checked without a model: one axis per kind, a multiplier
    with something to act on, the Prompt S/R search text, hypernetwork names."""
    axes = [axis for axis in (x, y, z) if axis is not None]
    if not axes:
        raise HypernetError("give at least one axis, e.g. --x hypernet:water,neon")
    kinds = [axis.kind for axis in axes]
    for kind in kinds:
        if kinds.count(kind) > 1:
            raise HypernetError(f"the {kind} axis is given twice; give each axis type once")
    if "multiplier" in kinds and "hypernet" not in kinds and not _TAG.search(base.prompt + base.negative_prompt):
        raise HypernetError("multiplier axis: the prompt has no <hypernet:NAME> tag and there is no hypernet axis; "
                            "add a tag to the prompt or a hypernet axis")
    for axis in axes:
        if axis.kind == "prompt" and axis.values[0] not in base.prompt and axis.values[0] not in base.negative_prompt:
            raise HypernetError(f"prompt axis (Prompt S/R): {axis.values[0]!r} is not in the prompt or the negative "
                                "prompt; the first value is the text each value replaces")
        if axis.kind == "hypernet" and library is not None:
            for name in axis.values:
                if name is not None:
                    try:
                        library.resolve(name)
                    except HypernetError as error:
                        raise HypernetError(f"hypernet axis: {error}") from None


def _fixed_seeds(base: Request, axes: list[Axis | None]) -> tuple[Request, list[Axis | None]]:
    """Random seeds (-1) drawn once, as the webui does, so every cell shares them."""
    base = dataclasses.replace(
        base, seed=base.seed if base.seed is not None and base.seed >= 0 else random.randrange(MAX_SEED),
        subseed=base.subseed if base.subseed is not None and base.subseed >= 0 else random.randrange(MAX_SEED))
    fixed = [Axis(a.kind, tuple(v if v >= 0 else random.randrange(MAX_SEED) for v in a.values))
             if a is not None and a.kind == "seed" else a for a in axes]
    return base, fixed


def plan_cells(base: Request, x: Axis | None, y: Axis | None, z: Axis | None) -> list[Cell]:
    """Every cell in grid order (z, then y, then x)."""
    axes = {axis.kind: axis for axis in (x, y, z) if axis is not None}
    cells = []
    for zi, z_value in enumerate(z.values if z else [None]):
        for yi, y_value in enumerate(y.values if y else [None]):
            for xi, x_value in enumerate(x.values if x else [None]):
                settings = {axis.kind: value for axis, value in ((x, x_value), (y, y_value), (z, z_value)) if axis}
                request = dataclasses.replace(cell_request(base, settings, axes), batch_size=1, batch_count=1)
                cells.append(Cell(xi, yi, zi, settings.get("checkpoint"), request, settings=settings))
    return cells


class ProgressLine:
    """`xyz: 3/8 images, 0:12 left` after each image, on stderr by default. The time left
    is timed from the first image on, so loading the model does not inflate it."""

    def __init__(self, total: int, label: str = "xyz", stream=None):
        self.total, self.label, self.stream = total, label, stream
        self.first: tuple[int, float] | None = None

    def __call__(self, done: int) -> None:
        left, now = "", time.monotonic()
        self.first = self.first or (done, now)
        if done > self.first[0] and done < self.total:
            seconds = round((now - self.first[1]) / (done - self.first[0]) * (self.total - done))
            left = f", {seconds // 60}:{seconds % 60:02d} left"
        print(f"{self.label}: {done}/{self.total} images{left}", file=self.stream or sys.stderr, flush=True)


def run_cells(generator_for_model: Callable, cells: list[Cell], progress: bool = False,
              on_cell: Callable[[Cell], None] | None = None, on_done: Callable[[int], None] | None = None,
              check: bool = True) -> list[Cell]:
    """Make every cell's image, the cells of one model back to back (each model loaded
    once, in the order the models first appear); with `check`, every cell of a model is
    checked (sizes, memory, network tags, sampler and schedule) before its first image."""
    models: list = []
    for cell in cells:
        if cell.model not in models:
            models.append(cell.model)
    done = 0
    for model in models:
        group = [cell for cell in cells if cell.model == model]
        generator = generator_for_model(model)
        if check:
            multiple = max(8, generator.pipe.vae_scale_factor)
            for cell in group:
                request = cell.request.validated(generator.native_size, multiple)
                generator.check_memory(request)
                generator.resolve_networks(request.prompt, request.negative_prompt)
                make_scheduler(request.sampler, generator.pipe.scheduler.config, request.schedule)
        for cell in group:
            cell.result = generator.generate(cell.request, progress=progress)[0]
            done += 1
            if on_cell is not None:
                on_cell(cell)
            if on_done is not None:
                on_done(done)
    return cells


def xyz_plot(generator_for_model: Callable, base: Request, x: Axis | None = None, y: Axis | None = None,
             z: Axis | None = None, *, library=None, progress: bool = False,
             on_cell: Callable[[Cell], None] | None = None, on_done: Callable[[int], None] | None = None) -> XYZResult:
    """The X/Y/Z plot of `base` over up to three axes. `generator_for_model(model)` gives
    the `Generator` of a checkpoint axis value (None: the caller's usual model; called
    once per model). With `library`, hypernetwork names are checked before any model
    loads; the rest is checked before the first image. Random seeds are drawn once."""
    from .grid import xyz_grid

    check_axes(base, x, y, z, library)
    base, (x, y, z) = _fixed_seeds(base, [x, y, z])
    cells = run_cells(generator_for_model, plan_cells(base, x, y, z), progress=progress, on_cell=on_cell,
                      on_done=on_done)
    columns, rows, planes = (len(axis.values) if axis else 1 for axis in (x, y, z))
    images = [[[cells[(zi * rows + yi) * columns + xi].result.image for xi in range(columns)] for yi in range(rows)]
              for zi in range(planes)]
    labels = (axis_labels(x), axis_labels(y), axis_labels(z))
    image, grids = xyz_grid(images, *labels)
    return XYZResult(image, cells, labels, grids)
