"""The writing half of a run (`trainer._Run`): its settings file, its checkpoints and the
final save, none of which ever writes non-finite weights; and the completion of a final
save that a killed run left undone."""

from __future__ import annotations

import datetime
import sys

from ..errors import HypernetError
from . import checkpoints, run_files, run_folder
from .plan import Plan, TrainingError
from .results import StopReason, TrainingResult


class RunSaving:
    """Mixed into `trainer._Run`; reads its plan, network, optimizer, scaler and result."""

    def write_settings(self) -> None:
        plan = self.plan
        path, segment = run_folder.settings_path(plan.run_dir, plan.start_step, plan.settings_file)
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
            "command": plan.command,
            "segment": segment,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "argv": " ".join(sys.argv),
        }
        self.settings_file = run_files.write_json(path, settings)

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
            **self.recovery_state(),
        }

    def stamp(self) -> None:
        metadata = self.network.metadata
        metadata.step = self.step
        metadata.name = self.plan.name
        if self.model is not None:
            metadata.sd_checkpoint = getattr(self.model, "hash", None)
            metadata.sd_checkpoint_name = getattr(self.model, "name", None)

    def save(self, final: bool = False) -> bool:
        """The checkpoint of this step (and with `final` the output file); False, with the
        run stopped, when the weights are not finite numbers: those are never written."""
        if not checkpoints.finite(self.network):
            self.refuse_non_finite()
            return False
        if not self.main:
            return True
        self.stamp()
        optimizer = self.optimizer if self.config.save_optimizer_state else None
        if self.step not in self.saved_steps:
            path = self.plan.run_dir / run_folder.CHECKPOINT_FOLDER / checkpoints.checkpoint_name(
                self.plan.name, self.step, self.plan.suffix)
            checkpoints.save_checkpoint(self.network, path, optimizer, self.state())
            self.saved_steps.add(self.step)
            self.result.checkpoints.append(path)
        if final and self.plan.output is not None:
            try:
                checkpoints.save_checkpoint(self.network, self.plan.output, optimizer, self.state())
            except HypernetError as error:
                raise TrainingError(f"{error}; the trained network is safe in {self.result.checkpoints[-1]}: run "
                                    "the same command again once the output can be written") from None
            self.result.output = self.plan.output
        run_files.draw_loss_plot(self.loss_log.history, self.plan.run_dir / run_files.PLOT_NAME, title=f"{self.plan.name} loss")
        return True

    def rescue(self) -> bool:
        """After an unexpected error: save the last complete step if that can be done (the
        main process; in a data-parallel run the others write nothing)."""
        if not self.main:
            return False
        try:
            return self.save()
        except (HypernetError, OSError):
            return False

    def refuse_non_finite(self) -> None:
        """Stop the run: its weights are no longer finite numbers (a far too high learning rate)."""
        if self.result.stop_reason == StopReason.NON_FINITE_WEIGHTS:
            return
        self.result.stop_reason = StopReason.NON_FINITE_WEIGHTS
        plan = self.plan
        last, step = ((self.result.checkpoints[-1], max(self.saved_steps)) if self.result.checkpoints
                      else (plan.resume.path, plan.start_step) if plan.resume
                      else (plan.output, plan.start_step) if plan.output is not None and plan.output.exists() else (None, 0))
        rate = plan.learning_rate.rate_at(max(self.step - 1, 0)) * getattr(self, "rate_factor", 1.0)
        self.say(f"training stopped at step {self.step}: the network's weights are no longer finite numbers (lower the "
                 f"learning rate, now {rate:g}, or enable gradient clipping); they are not saved"
                 + (f", {plan.output} is left as it was" if plan.output is not None else "")
                 + (f"; the last finite checkpoint is {last} (step {step})" if last is not None
                    else "; no finite checkpoint of this run was saved"))

    def mark_ended(self) -> None:
        if self.main and getattr(self, "settings_file", None) is not None:
            run_folder.mark_ended(self.settings_file, self.result.stop_reason, self.step, self.result.output)


def complete_final_save(plan: Plan, network, log, write: bool) -> TrainingResult:
    """A finished run whose output does not hold its last checkpoint (killed during the
    final save): write it now, with its side-cars."""
    point = plan.resume
    if write:
        checkpoints.save_checkpoint(point.network, plan.output, point.optimizer, point.state)
        record = run_folder.Record.read(plan.run_dir, plan.name)
        if record is not None and record.unfinished:
            run_folder.mark_ended(record.settings, StopReason.FINISHED, plan.start_step, plan.output)
    message = (f"{plan.output} did not hold step {plan.start_step} of this run yet (its final save did not complete); "
               f"written now from {point.path}")
    log(message)
    return TrainingResult(network, plan.start_step, plan.start_step, StopReason.FINISHED, plan.seed, output=plan.output,
                          run_dir=plan.run_dir, checkpoints=[point.path], messages=[*plan.messages, message])
