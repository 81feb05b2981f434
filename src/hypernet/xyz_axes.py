"""The X/Y/Z plot's axes: a type (hypernetwork, multiplier, sampler, steps, CFG, seed,
Prompt S/R, checkpoint, size, clip skip) and its values, parsed as the webui's script
reads them (CSV, with number ranges `1-5`, `1-10 (+3)`, `10-0 (-2)`, `0-1 [5]`) and each
checked on its own, without a model. Pure functions: `parse_axis("steps:10-20 (+5)")`.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import HypernetError
from .samplers import split_name

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"({_NUMBER})\s*-\s*({_NUMBER})\s*(?:\(\s*({_NUMBER})\s*\)|\[\s*(\d+)\s*\])?")
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
