"""Piecewise-constant schedules written as text: `"5e-5:100, 5e-6:1500, 5e-7"` (contract §7.2).

The learning rate and the gradient-clipping threshold share this grammar. `RATE:STEP`
means "RATE until global step STEP"; a bare `RATE` or `RATE:-1` means "until the last
step" and ends the schedule. Entries that end at or before the step training starts from
are skipped (so resuming picks up mid-schedule); a STEP beyond the last allowed step is
cut down to it and ends the schedule. Training stops when the last entry's step is
reached, even when the step limit is larger.

Unlike the webui, every entry is checked (also skipped ones and those after the end),
rates must be finite and not negative, and an error names the entry and its position in
the text instead of a generic "Invalid learning rate schedule".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import HypernetConfigError


class ScheduleError(HypernetConfigError):
    """A schedule string that does not parse; `position` is the 0-based character index."""

    def __init__(self, what: str, text: str, position: int, message: str):
        self.what = what
        self.text = text
        self.position = position
        pointer = " " * position + "^"
        super().__init__(f"{what} schedule {text!r}: {message} (at character {position + 1})\n  {text}\n  {pointer}")


@dataclass(frozen=True)
class Entry:
    rate: float
    end_step: int  # the rate applies while the steps done are below this


@dataclass(frozen=True)
class Schedule:
    text: str
    entries: tuple[Entry, ...]

    @property
    def end_step(self) -> int:
        """Training with this schedule finishes when this many steps are done."""
        return self.entries[-1].end_step if self.entries else 0

    def rate_at(self, steps_done: int) -> float:
        """The value for the step that follows `steps_done` completed steps."""
        for entry in self.entries:
            if steps_done < entry.end_step:
                return entry.rate
        return self.entries[-1].rate

    def finished(self, steps_done: int) -> bool:
        return steps_done >= self.end_step


_ENTRY = re.compile(r"[^,]+")


def _number(what: str, text: str, piece: str, offset: int, label: str) -> float:
    stripped = piece.strip()
    position = offset + (len(piece) - len(piece.lstrip()))
    try:
        value = float(stripped)
    except ValueError:
        raise ScheduleError(what, text, position, f"{label} {stripped!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ScheduleError(what, text, position, f"{label} {stripped!r} must be a finite number of at least 0")
    return value


def _step(what: str, text: str, piece: str, offset: int) -> int:
    stripped = piece.strip()
    position = offset + (len(piece) - len(piece.lstrip()))
    if not re.fullmatch(r"[+-]?\d+", stripped):
        raise ScheduleError(what, text, position, f"step {stripped!r} is not a whole number (use -1 for 'until the end')")
    value = int(stripped)
    if value < -1:
        raise ScheduleError(what, text, position, f"step {value} must be positive, or -1 for 'until the end'")
    return value


def parse_entries(text: str, what: str = "learning rate") -> list[tuple[float, int | None, int]]:
    """Every entry as (rate, step or None for 'until the end', position); validates all."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(what, str(text or ""), 0, "is empty; give a rate such as 0.00001 or '5e-5:100, 5e-6'")
    entries = []
    for match in _ENTRY.finditer(text):
        piece = match.group(0)
        if not piece.strip():
            continue
        parts = piece.split(":")
        if len(parts) > 2:
            colon = match.start() + len(parts[0]) + 1 + len(parts[1])
            raise ScheduleError(what, text, colon, "an entry holds one RATE:STEP pair; separate entries with ','")
        rate = _number(what, text, parts[0], match.start(), "rate")
        if len(parts) == 1:
            entries.append((rate, None, match.start()))
            continue
        offset = match.start() + len(parts[0]) + 1
        step = _step(what, text, parts[1], offset)
        step_position = offset + len(parts[1]) - len(parts[1].lstrip())
        entries.append((rate, None if step == -1 else step, step_position))
    if not entries:
        raise ScheduleError(what, text, 0, "holds no entries; give a rate such as 0.00001 or '5e-5:100, 5e-6'")
    previous = 0
    for rate, step, position in entries:
        if step is not None and step <= previous:
            raise ScheduleError(what, text, position, f"step {step} does not come after the previous entry's step {previous}")
        if step is not None:
            previous = step
    return entries


def parse_schedule(text: str, max_steps: int, start_step: int = 0, what: str = "learning rate") -> Schedule:
    """The schedule as it applies to a run limited to `max_steps`, resuming at `start_step`.

    An empty `entries` tuple means that the schedule has already ended at `start_step`
    (nothing left to train)."""
    if max_steps < 1:
        raise HypernetConfigError(f"max steps must be at least 1 (got {max_steps})")
    kept: list[Entry] = []
    for rate, step, _ in parse_entries(text, what):
        if step is None:
            if start_step < max_steps:
                kept.append(Entry(rate, max_steps))
            break
        if step > start_step:
            kept.append(Entry(rate, min(step, max_steps)))
            if step >= max_steps:
                break
    return Schedule(text, tuple(kept))
