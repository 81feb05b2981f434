"""One optimizer step of a run: the micro-batches drawn from the data stream, the loss,
the gradient reductions across processes, clipping, and the fallbacks when a step
cannot be taken (non-finite values, out of memory)."""

from __future__ import annotations

import contextlib
import re

import torch

from . import dataset as data, loss as loss_module, prompts, randomness
from .plan import OPTIMIZER, TrainingError


def _optimizer_class(name: str, messages: list[str]):
    candidate = getattr(torch.optim, name, None)
    if isinstance(candidate, type) and issubclass(candidate, torch.optim.Optimizer):
        return candidate
    messages.append(f"optimizer {name!r} from the side-car is not a torch.optim optimizer; using {OPTIMIZER}")
    return torch.optim.AdamW


IMPLEMENTATION_KEYS = ("fused", "foreach")


@contextlib.contextmanager
def together(processes: int, rank: int):
    """Around every collective of a data-parallel run. When another process dies (killed,
    out of memory, its machine gone), gloo and NCCL raise a RuntimeError about a socket in
    the survivors; it becomes a TrainingError saying what happened and what to do."""
    try:
        yield
    except RuntimeError as error:
        if processes <= 1 or isinstance(error, torch.OutOfMemoryError):
            raise
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        text = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". This is typically")[0]  # gloo's source position, its advice
        raise TrainingError(f"another process of this {processes}-process run stopped (process {rank} lost contact with "
                            f"it: {text}); run the same command again to continue from the last checkpoint") from error


def make_optimizer(optimizer_class, parameters, learning_rate: float):
    """The optimizer, with torch's fused kernel where it has one (AdamW on CPU and CUDA:
    about 6x faster than the per-tensor loop for a 22M-parameter network)."""
    if optimizer_class in (torch.optim.AdamW, torch.optim.Adam):
        try:
            return optimizer_class(parameters, lr=learning_rate, fused=True)
        except (RuntimeError, ValueError, TypeError):
            pass
    return optimizer_class(parameters, lr=learning_rate)



class OptimizerStep:
    """The step-making half of a run (`trainer._Run`): it reads the run's plan, dataset,
    optimizer and scaler, and makes one optimizer step at a time."""

    def fixed_prompt(self, example: data.Example) -> str:
        return prompts.fill_template(example.line, example.source.caption, self.plan.name)

    # -- data stream -------------------------------------------------------------------------
    def batches(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, data.epoch_batches(self.dataset.groups, self.plan.global_batch, self.plan.seed, epoch))
        return self._epoch_cache[1]

    def micro_batch(self, position: int):
        plan = self.plan
        epoch, index = divmod(position, plan.micro_per_epoch)
        batch = self.batches(epoch)[index]
        first = plan.rank * plan.batch_size
        latents, noises, timesteps, texts, weights = [], [], [], [], []
        for slot, item in enumerate(batch[first:first + plan.batch_size], start=first):
            example = self.dataset.examples[item]
            generator = randomness.generator(plan.seed, "example", position, slot)
            variant = int(torch.randint(2, (1,), generator=generator)) if self.config.flip else 0
            timesteps.append(int(torch.randint(self.noise.timesteps, (1,), generator=generator)))
            noises.append(torch.randn(example.latent_shape, generator=generator))
            latents.append(data.sample_latents(example, variant, generator))
            if example.line is not None:
                texts.append(self.fixed_prompt(example))
            else:
                texts.append(prompts.training_prompt(plan.template_lines, example.source.caption, plan.name, generator,
                                                     self.config.shuffle_tags, self.config.tag_dropout))
            if self.config.caption_dropout > 0 and float(torch.rand((), generator=generator)) < self.config.caption_dropout:
                texts[-1] = prompts.UNCONDITIONAL_PROMPT
            if example.weight is not None:
                weights.append(example.weight[variant])
        if not latents:
            return None
        device = plan.device
        return {
            "latents": torch.stack(latents).to(device),
            "noise": torch.stack(noises).to(device),
            "timesteps": torch.tensor(timesteps, device=device),
            "prompts": texts,
            "weight": torch.stack(weights).to(device) if weights else None,
            "items": batch,
            "epoch": epoch,
        }

    # -- one optimizer step ---------------------------------------------------------------------
    def reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.plan.processes > 1:
            with together(self.plan.processes, self.plan.rank):
                return self.accelerator.reduce(tensor, reduction="mean")
        return tensor

    def sync_gradients(self) -> None:
        if self.plan.processes <= 1:
            return
        with together(self.plan.processes, self.plan.rank):
            for parameter in self.parameters:
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
                parameter.grad = self.accelerator.reduce(parameter.grad, reduction="mean")

    def one_step(self):
        """Run the micro-batches of one optimizer step. Returns (outcome, loss, prompts,
        epoch) with outcome 'stepped', 'scaler-skip', 'non-finite loss' or
        'non-finite gradients'."""
        plan = self.plan
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=plan.device)
        texts, epoch = [], 0
        bad_local = torch.zeros((), device=plan.device)
        unet_dtype = next(self.pipe.unet.parameters()).dtype
        for micro in range(plan.gradient_accumulation):
            position = self.position + micro
            batch = self.micro_batch(position)
            if batch is None:
                continue
            texts, epoch = batch["prompts"], batch["epoch"]
            conditioning_states = self.text(batch["prompts"], plan.device, unet_dtype)
            torch.manual_seed(randomness.stream_seed(plan.seed, "dropout", position, plan.rank))
            if self.shared is not None and not getattr(self.pipe.unet, "is_gradient_checkpointing", False):
                self.shared.begin(getattr(conditioning_states, "context", conditioning_states))
            try:
                with torch.autocast(plan.device.type, dtype=plan.autocast_dtype or torch.float32,
                                    enabled=plan.autocast_dtype is not None):
                    loss = loss_module.diffusion_loss(self.pipe.unet, self.noise, batch["latents"], batch["noise"],
                                                      batch["timesteps"], conditioning_states, batch["weight"],
                                                      int(getattr(self.pipe, "vae_scale_factor", 8)))
                if not torch.isfinite(loss.detach()):
                    bad_local += 1
                    self.bad_batch = batch
                    break
                self.scaler.scale(loss / plan.gradient_accumulation).backward()
            finally:
                if self.shared is not None:
                    self.shared.forget()
            total += loss.detach() / plan.gradient_accumulation
        bad = self.reduce(bad_local)
        if bad.item() > 0:
            return "non-finite loss", float("nan"), texts, epoch
        self.sync_gradients()
        loss_value = float(self.reduce(total).item())
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)  # clip real gradients, not loss-scaled ones
            self.clip()
            scale = self.scaler.get_scale()
            self.updating = True
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return ("stepped" if self.scaler.get_scale() >= scale else "scaler-skip"), loss_value, texts, epoch
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return "non-finite gradients", loss_value, texts, epoch
        self.clip()
        self.updating = True
        self.optimizer.step()
        return "stepped", loss_value, texts, epoch

    def clip(self) -> None:
        if self.plan.clip is None:
            return
        threshold = self.plan.clip.rate_at(self.step)
        if self.config.clip_grad == "value":
            torch.nn.utils.clip_grad_value_(self.parameters, threshold)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters, threshold)

    def step_with_memory_fallback(self):
        while True:
            try:
                return self.one_step()
            except torch.OutOfMemoryError:
                unet = self.pipe.unet
                self.optimizer.zero_grad(set_to_none=True)
                if self.plan.checkpointing != "auto" or getattr(unet, "is_gradient_checkpointing", False):
                    raise TrainingError(
                        "out of accelerator memory; lower the batch size, or the training size, or use gradient "
                        "accumulation" + ("" if self.plan.checkpointing == "on" else " or --gradient-checkpointing on")
                    ) from None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                unet.enable_gradient_checkpointing()
                self.say("out of memory: gradient checkpointing is now on (slower steps, much less memory)")

    def report_non_finite(self, outcome: str, learning_rate: float) -> None:
        batch = getattr(self, "bad_batch", None)
        images = ""
        if batch is not None and outcome == "non-finite loss":
            names = [self.dataset.examples[i].source.path.name for i in batch["items"]]
            images = f" (images {', '.join(names)})"
        self.say(f"step {self.step + 1}: {outcome}{images}; the step was skipped and the weights kept. If this repeats, "
                 f"lower the learning rate (now {learning_rate:g})"
                 + (" or the clip value" if self.plan.clip is not None else " or enable gradient clipping"))
