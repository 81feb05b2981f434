"""Telling a diverging run from a noisy one, step by step.

A diffusion loss is very noisy from one step to the next: each example's timestep is
drawn uniformly, and the loss at a small timestep is tens of times the loss at a large
one (on the toy model, batch 4, learning rate 1e-3: one step's loss ranges from 0.004 to
0.27 around a median of 0.03; the standard deviation of its logarithm is 0.87 at batch
4 and 1.41 at batch 1). So the watch never judges one loss. It watches three things:

* **drift of the loss**: the mean log-loss of the last `short_window` (30) steps against
  `best`, the lowest mean log-loss of a `long_window` (150 steps, or all steps while
  fewer) the run has reached. Diverging when the short window stays more than
  max(`factor` (3), e^(`noise_margin` (6) x sd / sqrt(30))) times the best for `patience`
  (10) steps in a row, sd being the spread of the log-losses of the best window. Logs
  (a geometric mean) because a few small-timestep losses move an arithmetic mean of 30
  by half. The noise term lifts the bar for noisy runs (x4.5 at batch 1 on the toy
  model): the best is a minimum over the whole run, so it sits below the typical level,
  and with a bare 3x, 100,000 simulated steps with a log spread of 1.41 fired 81 times;
  with the margin, none did with spreads up to 2.0 (as tests/training/test_divergence.py
  checks on shorter runs).
  Evidence, on the toy model (40 `water` pictures, ZeroLast, caption dropout 0.4): the
  short window never went above 1.61x the best at 1e-3 (500 steps, batch 4), 1.73x at
  batch 1 (400 steps), 1.50x at 3e-3, 1.34x at 1e-2; raising the rate from 1e-3 to
  1e-2 at step 150 lifted it to 3.3x within 65 steps (caught), and a loss 30 times the
  best is caught in ~20 steps.
* **a jump of the weights**: the root mean square of the network's weights more than
  `rms_factor` (2) x its smallest value over the last `rms_window` (50) steps (or
  `rms_floor`, 0.05, when that is smaller). AdamW moves every weight by about the
  learning rate per step, so a rate of 0.3 or 1 doubles weights of RMS 0.07 (ZeroLast,
  Xavier) in the first step, before the loss can say anything (the first update already
  ruins the network: the loss goes from 0.03 to 0.5-1.4 at once and stays there, so it
  has no good level to compare with). On the toy model the RMS grew at most 1.003x in
  50 steps at 1e-3, 1.14x at 1e-2; at 0.1 it doubled by step 3, at 0.3 and 1 in step 1.
  The floor lets small weights grow: the webui's Normal init (RMS 0.01) grew 1.47x in 50
  steps at 1e-3 and would otherwise double at a few times that rate.
* **non-finite** losses and weights.

Every number the watch reads is one all processes of a data-parallel run share (the
loss averaged across processes, weights that identical updates keep identical), so
every process reaches the same verdict without a collective.

`Verdict.calm`: no drift streak, the short window under `calm_factor` (2) x the best, no
jump: weights fit to be kept as the last good ones (`recovery`).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    diverging: bool
    reason: str = ""
    calm: bool = True

    def __str__(self) -> str:
        return f"diverging ({self.reason})" if self.diverging else "healthy"


class DivergenceWatch:
    """Fed every optimizer step's loss (and the root mean square of the network's
    weights, `weight_rms`); says whether the run is diverging. `reset()` after going back
    to earlier weights. The defaults are the module docstring's."""

    def __init__(self, short_window: int = 30, long_window: int = 150, factor: float = 3.0, noise_margin: float = 6.0,
                 patience: int = 10, rms_factor: float = 2.0, rms_window: int = 50, rms_floor: float = 0.05,
                 calm_factor: float = 2.0):
        if not 0 < short_window <= long_window:
            raise ValueError(f"short_window must be in (0, long_window]: {short_window}, {long_window}")
        self.short_window, self.long_window = short_window, long_window
        self.factor, self.noise_margin, self.patience, self.calm_factor = factor, noise_margin, patience, calm_factor
        self.rms_factor, self.rms_window, self.rms_floor = rms_factor, rms_window, rms_floor
        self.logs: deque[float] = deque(maxlen=long_window)  # natural logarithms of the losses
        self.rms_history: deque[float] = deque(maxlen=rms_window + 1)
        self.best = math.inf  # the lowest mean log-loss over a long window
        self.best_spread = 0.0  # the standard deviation of the log-losses of that window
        self.streak = 0

    # -- feeding ---------------------------------------------------------------------------
    def start(self, weight_rms: float | None = None) -> None:
        """The weights' RMS before the first step (a first step can already blow it up)."""
        self.rms_history.clear()
        if weight_rms is not None and math.isfinite(weight_rms):
            self.rms_history.append(float(weight_rms))

    def reset(self, weight_rms: float | None = None) -> None:
        """After going back to earlier weights: the recent losses and RMS are forgotten;
        the best loss reached stays the yardstick (the weights gone back to reached it)."""
        self.logs.clear()
        self.streak = 0
        self.start(weight_rms)

    def threshold(self) -> float:
        """How far (in log-loss) the short window's mean may rise over the best."""
        return max(math.log(self.factor), self.noise_margin * self.best_spread / math.sqrt(self.short_window))

    def update(self, loss: float, weight_rms: float | None = None) -> Verdict:
        loss = float(loss)
        if not math.isfinite(loss):
            return Verdict(True, f"the loss is {loss}", calm=False)
        if weight_rms is not None:
            weight_rms = float(weight_rms)
            if not math.isfinite(weight_rms):
                return Verdict(True, "the weights are no longer finite numbers", calm=False)
        self.logs.append(math.log(max(loss, 1e-30)))
        jump = self._rms_jump(weight_rms)
        if len(self.logs) < self.short_window:
            return Verdict(True, jump, calm=False) if jump else Verdict(False, calm=False)
        logs = list(self.logs)
        mean = math.fsum(logs) / len(logs)
        if mean < self.best:
            self.best, self.best_spread = mean, statistics.pstdev(logs)
        rise = math.fsum(logs[-self.short_window:]) / self.short_window - self.best
        self.streak = self.streak + 1 if rise > self.threshold() else 0
        if jump:
            return Verdict(True, jump, calm=False)
        if self.streak >= self.patience:
            short, best = math.exp(self.best + rise), math.exp(self.best)
            return Verdict(True, f"the loss of the last {self.short_window} steps (geometric mean {short:.4g}) has "
                                 f"been over {math.exp(self.threshold()):.3g}x the best reached ({best:.4g}) for "
                                 f"{self.streak} steps", calm=False)
        return Verdict(False, calm=self.streak == 0 and rise <= math.log(self.calm_factor))

    def _rms_jump(self, weight_rms: float | None) -> str:
        if weight_rms is None:
            return ""
        self.rms_history.append(weight_rms)
        earlier = list(self.rms_history)[:-1]
        if not earlier:
            return ""
        smallest = min(earlier)
        if weight_rms > self.rms_factor * max(smallest, self.rms_floor):
            return (f"the weights' root mean square grew from {smallest:.4g} to {weight_rms:.4g} within "
                    f"{len(self.rms_history) - 1} steps (over {self.rms_factor:g}x)")
        return ""

    # -- saved with a checkpoint (exact resume) ---------------------------------------------
    def state_dict(self) -> dict:
        return {"logs": list(self.logs), "rms": list(self.rms_history),
                "best": self.best if math.isfinite(self.best) else None, "best_spread": self.best_spread,
                "streak": self.streak}

    def load_state_dict(self, state: dict) -> None:
        self.logs = deque((float(v) for v in state.get("logs", [])), maxlen=self.long_window)
        self.rms_history = deque((float(v) for v in state.get("rms", [])), maxlen=self.rms_window + 1)
        best = state.get("best")
        self.best = float(best) if best is not None else math.inf
        self.best_spread = float(state.get("best_spread", 0.0))
        self.streak = int(state.get("streak", 0))


def weight_rms(parameters) -> float:
    """The root mean square of all the weights together (one number, on the host): the
    norm divided by the square root of the count, so one floor fits every network size."""
    import torch

    tensors = [p.detach() for p in parameters]
    count = sum(t.numel() for t in tensors)
    if not count:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors]))
    return float(norm) / math.sqrt(count)
