"""Training the toy model from scratch, in plain functions: the VAE first (on pictures
of the base world and of both styles, so its decoder can draw what a hypernetwork asks
for), then the UNet and the text encoder together on the VAE's latents, exactly as SD
was trained (epsilon prediction on SD's noise schedule, 10% of captions dropped to the
empty prompt so classifier-free guidance works).

Everything is seeded; a plan (`plans.py`) fixes every size and step count. The VAE stage
is in `train_vae.py`; this module encodes the data, trains UNet and text encoder, and
runs the whole.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from . import evaluate, model, world
from .plans import BaseTrainingPlan, Budget, learning_rate_factor, progress_bar, training_plan
from .train_vae import judge_reconstructions, roll_style, train_vae

__all__ = ["BaseTrainingPlan", "training_plan", "train_vae", "judge_reconstructions", "encode_training_set",
           "train_unet", "train_base"]


# --- data ----------------------------------------------------------------------------


@torch.no_grad()
def encode_training_set(vae, tokenizer, plan: BaseTrainingPlan, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws `plan.images` captioned pictures of the training combinations and returns
    their unscaled latents (posterior means) and caption token ids. The scenes do not
    depend on `plan.unet_style_share` (styles are rolled from a separate generator), so
    runs with different shares (or a continued run) see the same scenes."""
    latents, captions = [], []
    chunk = 64
    scenes = list(world.scenes(plan.seed + 23, plan.images))
    style_rng = random.Random(plan.seed + 29)
    styles = [roll_style(style_rng, plan.unet_style_share) for _ in scenes]
    with progress_bar(len(scenes), "encode", progress) as bar:
        for start in range(0, len(scenes), chunk):
            part = list(zip(scenes[start : start + chunk], styles[start : start + chunk]))
            pixels = torch.from_numpy(world.image_array([world.draw(scene, style) for scene, style in part]))
            latents.append(vae.encode(pixels).latent_dist.mean)
            captions += [world.styled_caption(scene, style) for scene, style in part]
            bar.update(len(part))
    input_ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    return torch.cat(latents), input_ids


# --- UNet and text encoder -------------------------------------------------------------


class _Average:
    """An exponential moving average of a module's parameters, kept in a copy."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.copy = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._source = [p for p in module.parameters()]
        self._target = [p for p in self.copy.parameters()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._target, [p.detach() for p in self._source], 1.0 - decay)


def _snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1.0 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def _sample_timesteps(count: int, total: int, spread: float, generator: torch.Generator) -> torch.Tensor:
    """Training timesteps. Uniform sampling spends most steps where min-SNR weighting
    makes them count little (nearly clean or pure noise); the shape of the picture is
    decided in between, so a short run learns it much sooner when timesteps come from a
    logit-normal distribution centred there (the ends still occur)."""
    if spread <= 0:
        return torch.randint(0, total, (count,), generator=generator)
    fraction = torch.sigmoid(torch.randn(count, generator=generator) * spread)
    return (fraction * total).long().clamp(0, total - 1)


def train_unet(
    components: dict,
    latents: torch.Tensor,
    input_ids: torch.Tensor,
    plan: BaseTrainingPlan,
    judge=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    sample_folder: Path | None = None,
) -> tuple[dict, list[dict], int]:
    """Trains UNet and text encoder; returns components holding the averaged weights
    and the evaluation history (judge accuracy on generated held-out pictures)."""
    from diffusers import DDPMScheduler

    with model.seeded(plan.seed + 37):
        generator = torch.Generator().manual_seed(plan.seed + 37)
        unet, text_encoder, tokenizer = components["unet"], components["text_encoder"], components["tokenizer"]
        noise_scheduler = DDPMScheduler(**model.NOISE_SCHEDULE)
        scaled = latents * components["vae"].config.scaling_factor
        empty_ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        # The token table (49408 x 80) is most of the text encoder, yet captions use a few
        # dozen rows: it gets sparse gradients and its own sparse Adam, everything else AdamW.
        embedding = text_encoder.get_input_embeddings()
        embedding.sparse = True
        parameters = [p for p in list(unet.parameters()) + list(text_encoder.parameters()) if p is not embedding.weight]
        optimizer = torch.optim.AdamW(parameters, lr=plan.unet_learning_rate, weight_decay=0.0, betas=(0.9, 0.99))
        sparse_optimizer = torch.optim.SparseAdam([embedding.weight], lr=plan.unet_learning_rate, betas=(0.9, 0.99))
        unet.train()
        text_encoder.train()
        unet_average = _Average(unet, plan.ema_decay)
        text_average = _Average(text_encoder, plan.ema_decay)
        history: list[dict] = []
        recent: list[float] = []
        start_time = time.perf_counter()

        def averaged_components() -> dict:
            return {**components, "unet": unet_average.copy, "text_encoder": text_average.copy}

        def run_evaluation(step: int) -> None:
            if judge is None:
                return
            pipeline = model.assemble_pipeline(averaged_components())
            grid_path = None
            if sample_folder is not None:
                sample_folder.mkdir(parents=True, exist_ok=True)
                grid_path = sample_folder / f"step_{step:05d}.png"
            accuracy = evaluate.generation_accuracy(pipeline, judge, count=plan.eval_count, steps=plan.eval_steps, grid_path=grid_path)
            entry = {"step": step, "minutes": (time.perf_counter() - start_time) / 60, "loss": sum(recent) / max(1, len(recent)), **accuracy}
            history.append(entry)
            log(f"step {step}: loss {entry['loss']:.4f}, held-out accuracy " + ", ".join(f"{name} {value:.2f}" for name, value in accuracy.items()))

        budget = Budget(plan.unet_steps, plan.unet_minutes)
        step = 0
        with progress_bar(plan.unet_steps, "unet+text", progress) as bar:
            while (fraction := budget.fraction(step)) < 1.0:
                for group in optimizer.param_groups + sparse_optimizer.param_groups:
                    group["lr"] = plan.unet_learning_rate * learning_rate_factor(fraction, plan.warmup_steps / plan.unet_steps)
                index = torch.randint(0, scaled.shape[0], (plan.unet_batch_size,), generator=generator)
                clean = scaled[index]
                ids = input_ids[index].clone()
                dropped = torch.rand(plan.unet_batch_size, generator=generator) < plan.caption_dropout
                ids[dropped] = empty_ids
                noise = torch.randn(clean.shape, generator=generator)
                if plan.noise_offset:
                    noise = noise + plan.noise_offset * torch.randn((*clean.shape[:2], 1, 1), generator=generator)
                timesteps = _sample_timesteps(plan.unet_batch_size, noise_scheduler.config.num_train_timesteps, plan.timestep_spread, generator)
                noisy = noise_scheduler.add_noise(clean, noise, timesteps)
                context = text_encoder(ids)[0]
                prediction = unet(noisy, timesteps, context).sample
                per_sample = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
                loss = (per_sample * _snr_weights(noise_scheduler, timesteps, plan.min_snr_gamma)).mean()
                optimizer.zero_grad(set_to_none=True)
                sparse_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                sparse_optimizer.step()
                unet_average.update()
                text_average.update()
                recent = (recent + [per_sample.mean().item()])[-100:]
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
                step += 1
                if plan.eval_every and step % plan.eval_every == 0 and step < plan.unet_steps:
                    run_evaluation(step)
                    unet.train()
                    text_encoder.train()
        embedding.sparse = False
        text_average.copy.get_input_embeddings().sparse = False
        cut = " (time budget reached)" if budget.time_limited(step) else ""
        log(f"unet+text: {step} steps{cut}")
        run_evaluation(step)
        return averaged_components(), history, step


# --- the whole run ---------------------------------------------------------------------


def train_base(
    out_folder: str | Path,
    plan: BaseTrainingPlan,
    judge=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    vae_from: str | Path | None = None,
    continue_from: str | Path | None = None,
) -> dict:
    """Trains all components from scratch and saves the pipeline (fp16, diffusers
    layout) into `out_folder` with a `training.json` summary; returns the summary.
    `vae_from` (a toy-model folder) reuses that VAE and skips its stage;
    `continue_from` (a toy-model folder) starts UNet and text encoder from its weights
    too, for a second training stage. The trained
    VAE is saved as soon as its stage ends, and a grid of the evaluation pictures goes
    to `samples/` at each evaluation, so a long run can be looked at while it runs."""
    started = time.perf_counter()
    stages: dict[str, float] = {}
    out_folder = Path(out_folder)
    components = model.build_components(plan.seed)
    if continue_from is not None:
        # A second stage on top of an earlier run: all weights from there, the VAE kept.
        earlier = model.load_toy_pipeline(folder=continue_from)
        for name in ("unet", "text_encoder"):
            components[name] = getattr(earlier, name).train()
        vae_from = continue_from

    stage = time.perf_counter()
    if vae_from is not None:
        from diffusers import AutoencoderKL

        components["vae"] = AutoencoderKL.from_pretrained(str(Path(vae_from) / "vae"), local_files_only=True, dtype=torch.float32).eval()
        vae_result = {"vae_from": str(vae_from)}
        log(f"vae: reused from {vae_from}")
    else:
        vae_result = train_vae(components["vae"], plan, progress, log)
        copy.deepcopy(components["vae"]).to(torch.float16).save_pretrained(str(out_folder / "vae"))
        if judge is not None:
            vae_result["judge_on_reconstructions"] = judge_reconstructions(components["vae"], judge)
            log("vae: judge accuracy on reconstructions " + ", ".join(f"{k} {v:.2f}" for k, v in vae_result["judge_on_reconstructions"].items()))
    stages["vae_minutes"] = (time.perf_counter() - stage) / 60

    stage = time.perf_counter()
    latents, input_ids = encode_training_set(components["vae"], components["tokenizer"], plan, progress)
    if continue_from is None:
        scaling_factor = float(1.0 / latents.std())
        components["vae"].register_to_config(scaling_factor=scaling_factor)
    else:
        # The UNet being continued learnt on latents at the earlier run's scale.
        scaling_factor = float(components["vae"].config.scaling_factor)
    stages["encode_minutes"] = (time.perf_counter() - stage) / 60
    log(f"latents: {tuple(latents.shape)}, scaling factor {scaling_factor:.4f}")

    stage = time.perf_counter()
    trained, history, unet_steps_done = train_unet(components, latents, input_ids, plan, judge, progress, log, out_folder / "samples")
    stages["unet_minutes"] = (time.perf_counter() - stage) / 60

    pipeline = model.assemble_pipeline(trained)
    folder = model.save_pipeline(pipeline, out_folder)
    summary = {
        "plan": asdict(plan),
        "continued_from": str(continue_from) if continue_from is not None else None,
        "wall_minutes": (time.perf_counter() - started) / 60,
        **stages,
        **vae_result,
        "unet_steps_done": unet_steps_done,
        "scaling_factor": scaling_factor,
        "evaluations": history,
        "torch_threads": torch.get_num_threads(),
    }
    (Path(folder) / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log(f"saved to {folder} after {summary['wall_minutes']:.1f} minutes")
    return summary
