"""Training a hypernetwork on a diffusers Stable Diffusion pipeline (contract §7).

`train(pipe, network, config)` runs in two phases:

1. `prepare()` checks everything that can go wrong before the first step: options, the
   schedule strings, the template, the dataset (every image decoded), the network's
   feature sizes against the model's attention widths, the batch size. It writes nothing.
2. The run: the base model is frozen (`requires_grad_(False)` on UNet, VAE and text
   encoder, so backward computes input gradients only), latents and text encodings are
   cached, VAE and text encoder leave the accelerator, and AdamW updates the network.
   Checkpoints are atomic and resumable exactly; `stop()` returning True (the CLI's
   first Ctrl-C) ends the run after the current step and saves; a KeyboardInterrupt
   saves too unless it lands inside a weight update; a non-finite loss skips its step
   and keeps the last good weights; non-finite weights stop the run unsaved. A diverging
   run (`recovery`: a drifting loss, a jump of the weights, non-finite weights, non-finite
   losses `nonfinite_patience` times in a row) goes back to its last good weights with
   half the learning rate, unless `auto_recover` is off. Signals are the caller's: the
   library installs no handler.

Where the run goes and what it continues is the plan's (`run_folder`): a killed run is
continued by the same command run again, and no run overwrites another's files.

The pipeline is handed back as it came: requires_grad flags, train/eval modes, devices,
gradient checkpointing, scheduler and attention processors are restored on exit, even on
error.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

from .. import attention
from ..fileio import kill_point, make_folder
from ..network import Hypernetwork
from . import checkpoints, dataset as data, loss as loss_module, prompts, randomness, run_files, run_folder, sharing, text_cache
from .borrowing import borrowed
from .calibrating import calibrate_after_training, calibrating, calibration_missing
from .config import TrainingConfig
from .plan import OPTIMIZER, Inputs, Plan, TrainingError, check_inputs, prepare
from .recovery import STOP, WENT_BACK, RecoveringRun
from .results import StepInfo, StopReason, TrainingResult, describe_result
from .saving import RunSaving, complete_final_save
from .step import IMPLEMENTATION_KEYS, OptimizerStep, _optimizer_class, make_optimizer, together

__all__ = ["train", "prepare", "check_inputs", "borrowed", "make_optimizer", "Plan", "Inputs", "StepInfo",
           "StopReason", "TrainingResult", "TrainingError", "describe_result", "OPTIMIZER", "IMPLEMENTATION_KEYS"]


def _never() -> bool:
    return False


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


# -- the run -------------------------------------------------------------------------------------

class _Run(OptimizerStep, RunSaving, RecoveringRun):
    """One training run's working state; lives for one `train()` call."""

    def __init__(self, pipe, plan: Plan, model, accelerator, progress: bool, log, on_step,
                 stop: Callable[[], bool]):
        self.pipe = pipe
        self.plan = plan
        self.config = plan.config
        self.network = plan.network
        self.model = model
        self.accelerator = accelerator
        self.progress = progress
        self.log = log
        self.on_step = on_step
        self.stop = stop
        self.main = plan.rank == 0
        self.result = TrainingResult(plan.network, plan.start_step, plan.start_step, StopReason.FINISHED, plan.seed,
                                     run_dir=plan.run_dir, messages=list(plan.messages), skipped_steps=plan.skipped_steps,
                                     resumed_exactly=plan.resume.exact if plan.resume and plan.start_step else None)
        self.step = plan.start_step
        self.position = plan.position
        self._epoch_cache: tuple[int, list[list[int]]] | None = None
        self.last_prompts: list[str] = []
        self.saved_steps: set[int] = set()
        self.tensorboard = None

    def say(self, message: str) -> None:
        self.result.messages.append(message)
        if self.main:
            self.log(message)

    # -- setup ---------------------------------------------------------------------------
    def encode_dataset(self) -> data.Dataset:
        plan, config, pipe = self.plan, self.config, self.pipe
        pipe.vae.to(plan.device)
        encoded = data.encode(plan.sources, pipe.vae, mode=config.resize, target=plan.target_size,
                              multiple=plan.pixel_multiple, sampling=config.latent_sampling, flip=config.flip,
                              use_alpha_weight=config.use_alpha_weight, seed=plan.seed)
        pipe.vae.to("cpu")  # off the accelerator for the rest of the run (previews bring it back)
        if not config.prompts_vary:
            for example in encoded.examples:
                example.line = prompts.pick_line(plan.template_lines, randomness.generator(plan.seed, "template", example.index))
        return encoded

    def preview(self) -> None:
        if not self.main:
            return
        from .preview import render

        path = self.plan.run_dir / "images" / f"{self.plan.name}-{self.step}.png"
        devices = {name: next(getattr(self.pipe, name).parameters()).device for name in ("vae", *text_encoders(self.pipe))}
        for name in devices:
            getattr(self.pipe, name).to(self.plan.device)
        try:
            render(self.pipe, self.network, self.config, (self.last_prompts or [""])[0], self.plan.seed,
                   self.plan.target_size, path, model=self.model)
        finally:
            for name, device in devices.items():
                getattr(self.pipe, name).to(device)
        self.result.previews.append(path)
        if self.tensorboard is not None:
            import numpy as np
            from PIL import Image

            with Image.open(path) as image:
                self.tensorboard.add_image("preview", np.asarray(image.convert("RGB")), self.step, dataformats="HWC")

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> TrainingResult:
        plan, config, pipe = self.plan, self.config, self.pipe
        started = time.perf_counter()
        if self.main:
            make_folder(plan.run_dir)
            self.write_settings()
            self.loss_log = run_files.LossLog(plan.run_dir / run_files.CSV_NAME, config.csv_every, plan.steps_per_epoch,
                                           plan.start_step)
            if config.tensorboard:
                self.tensorboard, why = run_files.open_tensorboard(plan.run_dir / "tensorboard")
                if why:
                    self.say(why)
        else:
            self.loss_log = run_files.LossLog(None, 0, plan.steps_per_epoch, plan.start_step)
        self.noise = loss_module.noise_schedule(pipe.scheduler.config)
        self.dataset = self.encode_dataset()
        encoder = text_cache.prompt_encoder(pipe, config.clip_skip, config.embeddings_dir, self.say)
        self.text = text_cache.TextConditioning(encoder, config.text_cache_size)
        for name in text_encoders(pipe):
            getattr(pipe, name).to(plan.device)
        if not config.prompts_vary:
            fixed = [self.fixed_prompt(e) for e in self.dataset.examples]
            self.text.precompute(fixed + ([prompts.UNCONDITIONAL_PROMPT] if config.caption_dropout > 0 else []))
            for name in text_encoders(pipe):  # every prompt is cached: the encoders leave the accelerator
                getattr(pipe, name).to("cpu")

        network = self.network
        network.to(device=plan.device, dtype=torch.float32)
        network.requires_grad_(True)
        network.train()
        self.parameters = [p for p in network.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(_optimizer_class(plan.optimizer_name, self.result.messages), self.parameters,
                                        plan.learning_rate.rate_at(self.step))
        if plan.optimizer_state is not None:
            implementation = {key: self.optimizer.param_groups[0].get(key) for key in IMPLEMENTATION_KEYS}
            try:
                self.optimizer.load_state_dict(plan.optimizer_state)
            except (ValueError, KeyError, RuntimeError) as error:
                self.say(f"the optimizer state does not fit this network ({error}); starting a fresh {OPTIMIZER}")
            for group in self.optimizer.param_groups:  # the saved state is portable; keep this machine's kernel
                group.update(implementation)
        self.scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.scale_loss)
        if plan.scaler_state and self.scaler.is_enabled():
            self.scaler.load_state_dict(plan.scaler_state)
        if plan.checkpointing == "on":
            pipe.unet.enable_gradient_checkpointing()
        elif plan.checkpointing == "off" and getattr(pipe.unet, "is_gradient_checkpointing", False):
            pipe.unet.disable_gradient_checkpointing()

        self.shared = sharing.SharedContextNetwork(network) if sharing.can_share(network, plan.checkpointing == "on") else None
        self.begin_watch()
        bar = self.bar = None
        if self.main:
            from tqdm import tqdm

            bar = self.bar = tqdm(total=plan.end_step, initial=self.step, desc=f"Training {plan.name}", unit="step",
                       disable=not self.progress, dynamic_ncols=True, file=sys.stderr)
        bad_in_row = 0
        self.updating = False
        try:
            with attention.activate(pipe.unet, [(self.shared or network, 1.0)]):
                while self.step < plan.end_step and self.result.stop_reason != StopReason.NON_FINITE_WEIGHTS \
                        and not self.stop_agreed():
                    kill_point(f"step:{self.step}")
                    learning_rate = self.current_rate()
                    for group in self.optimizer.param_groups:
                        group["lr"] = learning_rate
                    outcome, loss_value, texts, epoch = self.step_with_memory_fallback()
                    self.position += plan.gradient_accumulation
                    if outcome != "stepped":
                        self.updating = False
                        self.result.skipped_steps += 1
                        if outcome == "scaler-skip":
                            continue
                        bad_in_row += 1
                        if not checkpoints.finite(network):  # the last update diverged: nothing left to keep
                            if self.recover(self.step, "the weights are no longer finite numbers"):
                                bad_in_row = 0
                                continue
                            self.refuse_non_finite()
                            break
                        self.report_non_finite(outcome, learning_rate)
                        if bad_in_row >= config.nonfinite_patience:
                            if self.recover(self.step + 1, f"{bad_in_row} steps in a row had a non-finite "
                                                           f"{outcome.split()[-1]}"):
                                bad_in_row = 0
                                continue
                            self.result.stop_reason = StopReason.NON_FINITE_LOSS
                            self.say(f"training stopped: {bad_in_row} steps in a row had a non-finite {outcome.split()[-1]}; "
                                     f"the weights of step {self.step} (the last good ones) are saved. Lower the learning "
                                     f"rate (now {learning_rate:g}) or enable gradient clipping "
                                     f"(clip_grad='norm', clip_value='1.0')")
                            break
                        continue
                    bad_in_row = 0
                    self.step += 1
                    network.metadata.step = self.step
                    self.updating = False
                    self.last_prompts = texts
                    verdict = self.watch_step(loss_value)
                    if verdict == STOP:
                        break
                    if verdict != WENT_BACK:
                        self.after_step(loss_value, learning_rate, epoch, bar)
        except KeyboardInterrupt:
            self.result.stop_reason = StopReason.INTERRUPTED
            if self.updating:
                self.say("interrupted during a weight update: these weights are not saved; the last checkpoint holds the "
                         "latest complete step")
                self.finish(bar, started, save=False)
                return self.result
        except Exception as error:
            if bar is not None:
                bar.close()
            if not self.updating and self.step > self.plan.start_step and self.rescue():
                # a resumable checkpoint of the last complete step; the output file is left alone
                self.say(f"training failed at step {self.step + 1} ({type(error).__name__}: {error}); the last complete "
                         f"step is saved in {self.result.checkpoints[-1]}; resume from it with --resume")
            self.network.eval()
            raise
        if self.stop() and self.result.stop_reason == StopReason.FINISHED and self.step < plan.end_step:
            self.result.stop_reason = StopReason.INTERRUPTED
        self.finish(bar, started, save=True)
        return self.result

    def stop_agreed(self) -> bool:
        """Whether to stop before the next step; all processes of a data-parallel run
        decide together (a Ctrl-C reaches them at slightly different moments)."""
        wanted = bool(self.stop())
        if self.plan.processes <= 1:
            return wanted
        flag = torch.tensor(float(wanted), device=self.plan.device)
        with together(self.plan.processes, self.plan.rank):
            return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def after_step(self, loss_value: float, learning_rate: float, epoch: int, bar) -> None:
        plan, config = self.plan, self.config
        step = self.step
        self.result.losses.append((step, loss_value))
        epoch_index, epoch_step = divmod(step - 1, plan.steps_per_epoch)
        if self.main:
            self.loss_log.add(step, loss_value, learning_rate)
            if self.tensorboard is not None:
                self.tensorboard.add_scalar("loss", loss_value, step)
                self.tensorboard.add_scalar("learning_rate", learning_rate, step)
            if bar is not None:
                bar.set_description(f"Training {plan.name} [epoch {epoch_index}: {epoch_step + 1}/{plan.steps_per_epoch}]",
                                    refresh=False)
                bar.set_postfix(loss=f"{loss_value:.7f}", lr=f"{learning_rate:.3g}", refresh=False)
                bar.update(1)
        if config.save_every and step % config.save_every == 0 and step < plan.end_step:
            self.save()
        if config.preview_every and step % config.preview_every == 0:
            self.preview()
        if self.processes_sync_needed(step):
            with together(plan.processes, plan.rank):
                self.accelerator.wait_for_everyone()
        if self.on_step is not None and self.main:
            self.on_step(StepInfo(step, loss_value, learning_rate, epoch_index, epoch_step + 1, plan.steps_per_epoch,
                                  list(self.last_prompts), self.network))

    def processes_sync_needed(self, step: int) -> bool:
        config = self.config
        return self.plan.processes > 1 and (
            (config.save_every and step % config.save_every == 0) or (config.preview_every and step % config.preview_every == 0)
        )

    def finish(self, bar, started: float, save: bool) -> None:
        if bar is not None:
            bar.close()
        if save:
            self.save(final=True)
            self.mark_ended()
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.network.eval()
        self.network.requires_grad_(False)
        self.result.steps_done = self.step
        self.result.seconds = time.perf_counter() - started


def train(pipe, network: Hypernetwork, config: TrainingConfig, *, output=None, resume=None, model=None,
          accelerator=None, progress: bool = True, log: Callable[[str], None] | None = None,
          on_step: Callable[[StepInfo], None] | None = None, stop: Callable[[], bool] | None = None,
          inputs: Inputs | None = None) -> TrainingResult:
    """Train `network` (in place) on `pipe` as `config` says.

    `output`: where the final network goes (default: the file `network` was loaded from,
    as the webui overwrites it; None for a network never saved: only the run folder).
    `resume`: a checkpoint to continue from (its weights, `.optim` and `.train.json`).
    A network loaded from a file with `step > 0` continues from that file's side-cars.
    `model`: a `ModelInfo` (name, hash) recorded as the file's `sd_checkpoint`.
    `accelerator`: an `accelerate.Accelerator` for data-parallel runs (made when None).
    `stop`: polled after every step; True ends the run cleanly (saved). The CLI's
    Ctrl-C handler sets it; the library installs no signal handler.
    `inputs`: the result of `check_inputs(config)`, when the caller already ran it.
    """
    log = log or _default_log
    processes, rank = 1, 0
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=next(pipe.unet.parameters()).device.type == "cpu")
    processes, rank = int(accelerator.num_processes), int(accelerator.process_index)
    plan = prepare(pipe, network, config, output=output, resume=resume, processes=processes, rank=rank, inputs=inputs)
    if processes > 1:
        with together(processes, rank):
            accelerator.wait_for_everyone()  # every process has read the run folder before the first writes
    if rank == 0:
        removed = run_folder.remove_stale(plan.run_dir, plan.name, plan.output)
        if removed:
            log(f"removed {len(removed)} files left by an interrupted save: {', '.join(p.name for p in removed)}")
    if plan.finished_already and plan.final_save_pending:
        for message in plan.messages:
            log(message)
        return complete_final_save(plan, network, log, write=rank == 0)
    if plan.finished_already:
        for message in plan.messages:
            log(message)
        reason = (f"nothing to do: {plan.name!r} is at step {plan.start_step} and the learning-rate schedule "
                  f"{config.learning_rate!r} ends at step {plan.end_step} (max steps {config.max_steps})")
        log(reason)
        result = TrainingResult(network, plan.start_step, plan.start_step, StopReason.ALREADY_FINISHED, plan.seed,
                                messages=[*plan.messages, reason])
        if rank == 0 and calibration_missing(config, network, plan.output):  # stopped while it calibrated
            log(f"{plan.name}: its multiplier was never calibrated; calibrating it now")
            result.calibration = calibrate_after_training(pipe, network, config, [s.caption for s in plan.sources],
                                                          plan.target_size, plan.output, log, progress)
        return result
    for message in plan.messages:
        if rank == 0:
            log(message)
    devices = [plan.device] if plan.device.type == "cuda" else []
    if network.metadata.multiplier_calibration is not None:
        network.metadata.multiplier_calibration = None  # fitted to the old weights; fitted again at the end
        if rank == 0:
            log(f"{plan.name}: its multiplier calibration is dropped (training changes what it measured)"
                + (", and fitted again when the run ends" if calibrating(config) else ""))
    with borrowed(pipe), torch.random.fork_rng(devices=devices):
        run = _Run(pipe, plan, model, accelerator, progress, log, on_step, stop or _never)
        result = run.run()
    if calibrating(config) and rank == 0 and result.stop_reason == StopReason.FINISHED and plan.output is not None:

        result.calibration = calibrate_after_training(pipe, network, config, [s.caption for s in plan.sources],
                                                      plan.target_size, plan.output, log, progress)
    return result


def text_encoders(pipe) -> tuple[str, ...]:
    """The pipeline's text encoders by attribute name (SDXL has two)."""
    return ("text_encoder", "text_encoder_2") if getattr(pipe, "text_encoder_2", None) is not None else ("text_encoder",)
