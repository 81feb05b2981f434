"""The recovering half of a run (`trainer._Run`): it feeds every step to a
`DivergenceWatch`, keeps the last good weights in memory, and when the run diverges
(`auto_recover`, on by default) goes back to them with half the learning rate.

What is kept (a `Snapshot`): the network's weights, the optimizer and loss-scaler state,
the step and the position in the data stream, copied to the CPU (a hypernetwork is
small: 22M parameters are 264 MB with AdamW's two moments). A copy is taken every
`SNAPSHOT_EVERY` steps while the watch is calm, and becomes the last good one only after
`SNAPSHOT_EVERY` more steps in which the watch stayed calm: weights taken as a drift
began are never the ones gone back to. The weights a run starts from are the first
good ones.

Going back rewinds the run to that step: the loss CSV and `result.losses` lose the
rows after it, the checkpoints this run wrote after it are deleted (they hold the
abandoned weights; a re-run must not continue from them), and the data stream replays
from there. The learning-rate factor (1, then 0.5, 0.25, ...) multiplies the schedule
for the rest of the run; it is saved in each checkpoint's `.train.json` with the watch's
state, so a resumed run continues as the uninterrupted one would have (except that the
last good weights in memory are, after a resume, the resumed ones). Each recovery is a
line in the run folder's `recoveries.csv` and an entry of `result.recoveries`.
"""

from __future__ import annotations

import csv
import datetime
import math
from dataclasses import dataclass

import torch

from . import checkpoints, run_folder
from ..formats import sidecar_path
from .divergence import DivergenceWatch, weight_rms
from .results import Recovery, StopReason

RECOVERIES_NAME = "recoveries.csv"
RECOVERY_COLUMNS = ("step", "back_to_step", "reason", "learning_rate_factor", "learning_rate", "time")
MAX_RECOVERIES = 4
RATE_FACTOR = 0.5
SNAPSHOT_EVERY = 20

GO_ON, WENT_BACK, STOP = "go on", "went back", "stop"


@dataclass
class Snapshot:
    step: int
    position: int
    network: dict
    optimizer: dict
    scaler: dict | None
    calm_since: bool = True  # the watch stayed calm since it was taken


class RecoveringRun:
    """Mixed into `trainer._Run`; reads its plan, config, network, optimizer, scaler,
    result and loss log."""

    def begin_watch(self) -> None:
        """Before the first step: the factor and watch a resumed run saved, the first
        good weights."""
        plan = self.plan
        state = (plan.resume.state if plan.resume is not None and plan.start_step else None) or {}
        self.rate_factor = float(state.get("learning_rate_factor", 1.0))
        self.recovery_count = int(state.get("recoveries", 0))
        self.watch = DivergenceWatch()
        if isinstance(state.get("divergence_watch"), dict):
            self.watch.load_state_dict(state["divergence_watch"])
        else:
            self.watch.start(weight_rms(self.parameters))
        self.warned_diverging = False
        self.good = self.snapshot()
        self.pending: Snapshot | None = None
        if self.rate_factor != 1.0:
            self.say(f"the learning rate is {self.rate_factor:g}x the schedule: the run continued here went back "
                     f"to earlier weights {self.recovery_count} time{'s' if self.recovery_count != 1 else ''}")

    def recovery_state(self) -> dict:
        """What a checkpoint's `.train.json` keeps of it."""
        if not hasattr(self, "watch"):  # not started yet
            return {}
        return {"learning_rate_factor": self.rate_factor, "recoveries": self.recovery_count,
                "divergence_watch": self.watch.state_dict()}

    # -- every step ---------------------------------------------------------------------------
    def watch_step(self, loss_value: float) -> str:
        """After a step: GO_ON, WENT_BACK (to the last good weights) or STOP (diverged
        with every recovery used: the last good weights are back, to be saved)."""
        norm = weight_rms(self.parameters)
        verdict = self.watch.update(loss_value, norm)
        if not verdict.diverging:
            self.keep_good_weights(verdict.calm)
            return GO_ON
        if self.recover(self.step, verdict.reason):
            return WENT_BACK
        if not math.isfinite(norm):
            return GO_ON  # handled as without recovery: such weights are never saved and the run stops
        if not self.config.auto_recover:
            if not self.warned_diverging:
                self.warned_diverging = True
                self.say(f"warning: at step {self.step} the loss is diverging ({verdict.reason}); lower the learning "
                         f"rate (now {self.current_rate():g}) or enable gradient clipping; with --auto-recover the "
                         "run goes back to its last good weights by itself")
            return GO_ON
        failed = self.step
        self.restore(self.good)
        self.result.stop_reason = StopReason.DIVERGED
        self.say(f"training stopped: the loss diverged at step {failed} ({verdict.reason}) after "
                 f"{self.recovery_count} recoveries (learning rate now {self.rate_factor:g}x the schedule); the last "
                 f"good weights, of step {self.step}, are saved. Lower the learning rate or enable gradient clipping")
        return STOP

    def keep_good_weights(self, calm: bool) -> None:
        if self.pending is not None and not calm:
            self.pending.calm_since = False
        if self.step % SNAPSHOT_EVERY:
            return
        if self.pending is not None and self.pending.calm_since:
            self.good = self.pending
        self.pending = self.snapshot() if calm else None

    def current_rate(self) -> float:
        return self.plan.learning_rate.rate_at(self.step) * self.rate_factor

    # -- snapshots ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(self.step, self.position, checkpoints.cpu_copy(self.network.state_dict()),
                        checkpoints.cpu_copy(self.optimizer.state_dict()),
                        dict(self.scaler.state_dict()) if self.scaler.is_enabled() else None)

    def restore(self, snapshot: Snapshot) -> None:
        with torch.no_grad():
            self.network.load_state_dict(snapshot.network)
        self.optimizer.load_state_dict(snapshot.optimizer)
        if snapshot.scaler is not None:
            self.scaler.load_state_dict(snapshot.scaler)
        self.optimizer.zero_grad(set_to_none=True)
        self.step, self.position = snapshot.step, snapshot.position
        self.network.metadata.step = self.step
        self.pending = None
        self.rewind_outputs(self.step)
        self.watch.reset(weight_rms(self.parameters))

    def rewind_outputs(self, step: int) -> None:
        """The run's records after `step` are of weights given up: gone."""
        self.result.losses = [(s, loss) for s, loss in self.result.losses if s <= step]
        self.loss_log.rewind(step)
        for later in sorted(s for s in self.saved_steps if s > step):
            self.saved_steps.discard(later)
            path = self.plan.run_dir / run_folder.CHECKPOINT_FOLDER / checkpoints.checkpoint_name(
                self.plan.name, later, self.plan.suffix)
            self.result.checkpoints = [p for p in self.result.checkpoints if p != path]
            if self.main:  # the network first: a visible checkpoint always has its side-cars
                for file in (path, sidecar_path(path), checkpoints.state_path(path)):
                    file.unlink(missing_ok=True)
        if getattr(self, "bar", None) is not None:
            self.bar.n = step
            self.bar.refresh()

    # -- going back ---------------------------------------------------------------------------
    def recover(self, failed_step: int, reason: str) -> bool:
        """Go back to the last good weights with half the learning rate; False when
        recovery is off or used up."""
        if not self.config.auto_recover or self.recovery_count >= MAX_RECOVERIES:
            return False
        self.restore(self.good)
        self.rate_factor *= RATE_FACTOR
        self.recovery_count += 1
        record = Recovery(failed_step, self.step, reason, self.rate_factor, self.current_rate())
        self.result.recoveries.append(record)
        self.write_recovery(record)
        self.say(f"step {failed_step}: the run is diverging ({reason}); went back to step {self.step} (the last good "
                 f"weights) with the learning rate halved: {self.rate_factor:g}x the schedule, now "
                 f"{record.learning_rate:g} (recovery {self.recovery_count} of {MAX_RECOVERIES}, in {RECOVERIES_NAME})")
        return True

    def write_recovery(self, record: Recovery) -> None:
        if not self.main:
            return
        path = self.plan.run_dir / RECOVERIES_NAME
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            if new:
                writer.writerow(RECOVERY_COLUMNS)
            writer.writerow([record.step, record.back_to_step, record.reason, f"{record.learning_rate_factor:g}",
                             f"{record.learning_rate:g}", datetime.datetime.now().isoformat(timespec="seconds")])
