"""The X/Y/Z plot, as the webui's script draws it: every combination of up to three axes
of settings (hypernetwork, multiplier, sampler, steps, CFG, seed, Prompt S/R, checkpoint,
size, clip skip), one labelled grid per Z value, the grids side by side.

Parsing (`parse_axis`) is pure and needs no model; `xyz_plot` checks every value before
any image is made, runs the cells that need one model back to back (each model is loaded
once, through the caller's `generator_for_model`) and assembles the picture. Each cell's
`Result` carries its own infotext, so any cell reproduces with a single `generate`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .errors import HypernetError
from .request import MAX_SEED, Request
from .samplers import make_scheduler, split_name

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"({_NUMBER})\s*-\s*({_NUMBER})\s*(?:\(\s*({_NUMBER})\s*\)|\[\s*(\d+)\s*\])?")
_TAG = re.compile(r"<hypernet:([^:>]+)(?::[^>]*)?>")
MAX_VALUES = 1000  # per axis: a range that makes more is a typo, not a plot
DEFAULT_MODEL = "default"  # checkpoint axis value: the model the caller uses when none is named


@dataclass(frozen=True)
class Axis:
    """One axis: its kind (a key of `KINDS`) and its values, parsed and checked."""

    kind: str
    values: tuple


@dataclass(frozen=True)
class AxisKind:
    """How one kind of axis reads a value, labels it and what its values look like."""

    parse: Callable[[str], object]  # one value's text -> value; ValueError(what would be right)
    label: Callable[[object], str]
    aliases: tuple[str, ...] = ()
    numeric: bool = False  # accepts webui ranges: 1-5, 1-10 (+3), 10-0 (-2), 0-1 [5]
    integer: bool = False


# -- values ---------------------------------------------------------------------------
def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a number, e.g. 7 or 7.5") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _whole(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a whole number, e.g. 20") from None
    if not value.is_integer():
        raise ValueError("is not a whole number, e.g. 20")
    return int(value)


def _at_least(minimum: int, what: str):
    def parse(text: str) -> int:
        value = _whole(text)
        if value < minimum:
            raise ValueError(f"must be {what}")
        return value

    return parse


def _sampler(text: str) -> str:
    try:
        base, schedule = split_name(text)
    except HypernetError as error:
        raise ValueError(str(error).replace(f"unknown sampler {text!r}; ", "is not a sampler; ")) from None
    return base if schedule == "Automatic" else f"{base} {schedule}"


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\s*[xX×]\s*(\d+)", text)
    if match is None:
        raise ValueError("must look like 512x512 (WIDTHxHEIGHT)")
    width, height = int(match.group(1)), int(match.group(2))
    if not (width and height and width % 8 == 0 and height % 8 == 0):
        raise ValueError("must have a width and height that are positive multiples of 8")
    return width, height


def _hypernet(text: str):
    return None if text.lower() == "none" else text


def _checkpoint(text: str):
    if text.lower() == DEFAULT_MODEL:
        return None
    if not Path(text).expanduser().exists():
        raise ValueError(f"is not a checkpoint file or diffusers folder (or {DEFAULT_MODEL!r} for the usual model)")
    return text


def _number_label(value) -> str:
    from .library import format_multiplier

    return format_multiplier(value)


def _checkpoint_label(value) -> str:
    return f"Checkpoint name: {DEFAULT_MODEL if value is None else Path(value).stem or value}"


KINDS: dict[str, AxisKind] = {
    "hypernet": AxisKind(_hypernet, lambda v: f"hypernet: {v or 'none'}", ("hypernetwork", "hypernetworks", "network")),
    "multiplier": AxisKind(_number, lambda v: f"multiplier: {_number_label(v)}",
                           ("strength", "hypernet multiplier", "hypernet strength"), numeric=True),
    "sampler": AxisKind(_sampler, lambda v: f"Sampler: {v}", ("sampler name", "sampling method")),
    "steps": AxisKind(_at_least(1, "at least 1"), lambda v: f"Steps: {v}", ("step", "sampling steps"),
                      numeric=True, integer=True),
    "cfg": AxisKind(_number, lambda v: f"CFG Scale: {_number_label(v)}", ("cfg scale", "guidance", "guidance scale"),
                    numeric=True),
    "seed": AxisKind(_at_least(-1, "-1 (random) or a whole number of at least 0"), lambda v: f"Seed: {v}",
                     ("seeds",), numeric=True, integer=True),
    "prompt": AxisKind(str, str, ("prompt s/r", "prompt sr", "s/r", "sr", "search replace")),
    "checkpoint": AxisKind(_checkpoint, _checkpoint_label, ("checkpoint name", "model", "models")),
    "size": AxisKind(_size, lambda v: f"Size: {v[0]}x{v[1]}", ("resolution",)),
    "clip skip": AxisKind(_at_least(1, "at least 1"), lambda v: f"Clip skip: {v}", ("clipskip",),
                          numeric=True, integer=True),
}


def axis_kind(name: str) -> str:
    """The kind an axis name means (case, `_` and `-` do not matter; aliases allowed)."""
    key = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
    for kind, spec in KINDS.items():
        if key == kind or key in spec.aliases:
            return kind
    raise HypernetError(f"unknown axis type {name!r}; valid: {', '.join(KINDS)}")


def split_values(text: str) -> list[str]:
    """Comma-separated values, CSV-quoted where a value holds a comma (as the webui reads them)."""
    try:
        rows = list(csv.reader([text], skipinitialspace=True))
    except csv.Error as error:
        raise HypernetError(f"values {text!r}: {error}; quote a value holding a comma as \"a, b\"") from None
    return [value.strip() for row in rows for value in row]


def _expand_range(text: str, integer: bool) -> list[float] | None:
    """The values of a webui range, or None when `text` is not one."""
    match = _RANGE.fullmatch(text)
    if match is None:
        return None
    start, end, step, count = match.groups()
    start, end = float(start), float(end)
    if count is not None:
        count = int(count)
        if not 1 <= count <= MAX_VALUES:
            raise ValueError(f"count [{count}] must be 1 to {MAX_VALUES}")
        if count == 1:
            return [start]
        values = [start + (end - start) * index / (count - 1) for index in range(count)]
        return [int(v) if integer else round(v, 10) for v in values]
    step = float(step) if step is not None else (1.0 if end >= start else -1.0)
    if step == 0 or (end - start) * step < 0:
        raise ValueError(f"step {step:g} never goes from {start:g} to {end:g}")
    number = math.floor((end - start) / step + 1e-9) + 1
    if number > MAX_VALUES:
        raise ValueError(f"makes {number} values, more than {MAX_VALUES}")
    return [round(start + index * step, 10) for index in range(number)]


def parse_values(kind: str, text: str) -> tuple:
    """The checked values of an axis of `kind` from its text; ranges expanded."""
    spec = KINDS[kind]
    values = []
    items = split_values(text)
    if kind != "prompt":
        items = [item for item in items if item]
    for item in items:
        try:
            expanded = _expand_range(item, spec.integer) if spec.numeric else None
            if expanded is None:
                values.append(spec.parse(item))
            else:
                values.extend(spec.parse(repr(value)) for value in expanded)
        except ValueError as error:
            raise HypernetError(f"{kind} axis: value {item!r} {error}") from None
    if not values:
        raise HypernetError(f"{kind} axis has no values, e.g. {kind}:{_EXAMPLES[kind]}")
    if kind == "prompt" and not values[0]:
        raise HypernetError("prompt axis (Prompt S/R): the first value is the text to search for and must not be empty")
    return tuple(values)


_EXAMPLES = {"hypernet": "water,neon,none", "multiplier": "0,0.5,1", "sampler": "Euler a,DDIM", "steps": "10-30 (+10)",
             "cfg": "5,7,9", "seed": "1-4", "prompt": "red,blue,green", "checkpoint": "default,other.safetensors",
             "size": "512x512,768x512", "clip skip": "1,2"}


def parse_axis(spec: str) -> Axis:
    """`"steps:10-20 (+5)"` -> Axis('steps', (10, 15, 20)): a kind, a colon, the values."""
    name, colon, text = spec.partition(":")
    if not colon:
        raise HypernetError(f"axis {spec!r} must look like TYPE:VALUES, e.g. steps:10,20 or hypernet:water,neon")
    kind = axis_kind(name.strip())
    return Axis(kind, parse_values(kind, text))


def axis_labels(axis: Axis | None) -> list[str]:
    if axis is None:
        return [""]
    return [KINDS[axis.kind].label(value) for value in axis.values]


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
