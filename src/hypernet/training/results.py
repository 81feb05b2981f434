"""What a training run hands back: its result, the per-step report, why it stopped."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the results (the CLI's exit codes) needs no torch
    from ..network import Hypernetwork


class StopReason(str, enum.Enum):
    """Why a run ended. The values are the strings the CLI and the HTTP API report."""

    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    NON_FINITE_LOSS = "non-finite loss"
    NON_FINITE_WEIGHTS = "non-finite weights"  # stopped unsaved: such weights are never written
    DIVERGED = "diverged"  # diverged again after every recovery: the last good weights are saved
    ALREADY_FINISHED = "already finished"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


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
class Recovery:
    """A run going back to its last good weights (`auto_recover`), as `recoveries.csv` says."""

    step: int  # the step at which the run was found diverging
    back_to_step: int
    reason: str
    learning_rate_factor: float  # on the schedule from then on
    learning_rate: float  # the rate right after going back


@dataclass
class TrainingResult:
    network: Hypernetwork
    start_step: int
    steps_done: int  # the network's step at the end
    stop_reason: StopReason
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
    recoveries: list[Recovery] = field(default_factory=list)
    calibration: object | None = None  # the fitted `hypernet.calibration.Calibration`, when the run calibrated

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None


def describe_result(result: TrainingResult) -> str:
    """A short human summary, for the CLI and logs."""
    lines = [f"{result.stop_reason}: step {result.start_step} -> {result.steps_done} in {result.seconds:.1f} s"]
    if result.last_loss is not None and math.isfinite(result.last_loss):
        lines.append(f"last loss {result.last_loss:.7f}")
    if result.recoveries:
        last = result.recoveries[-1]
        lines.append(f"went back to earlier weights {len(result.recoveries)} time{'s' if len(result.recoveries) > 1 else ''}"
                     f" (learning rate {last.learning_rate_factor:g}x the schedule)")
    if result.output:
        lines.append(f"saved {result.output}")
    if result.run_dir:
        lines.append(f"run folder {result.run_dir}")
    return "; ".join(lines)
