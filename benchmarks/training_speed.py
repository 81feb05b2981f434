"""Training speed and memory: our trainer's step against one UNet forward, and against a
webui-style step (UNet weights left trainable as the webui leaves them, gradient
checkpointing on, the prompt re-encoded every step), same model, same hypernetwork.

Each variant runs in a fresh process so that its peak memory is its own (CPU: peak RSS,
reset once the model is loaded; CUDA: max_memory_allocated), and times one UNet forward
first as its unit. Prints a markdown table.

    python benchmarks/training_speed.py [--model auto|toy|sd15|PATH] [--size 128] [--steps 3] [--threads 1]
                                        [--network default|cross]

`auto` uses the embedded toy model when it is present, else a randomly initialised
SD 1.5-architecture pipeline at a small resolution.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402


def _status_mib(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) / 1024


class Memory:
    """Peak memory of the measured phase: CUDA allocator stats, or the process's peak
    RSS (Linux's VmHWM, reset through /proc/self/clear_refs)."""

    def __init__(self, device):
        self.device = device
        self.baseline = None

    def start(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated() / 2**20
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.baseline = _status_mib("VmRSS")

    def peak(self) -> tuple[float, float]:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = _status_mib("VmHWM")
        return peak, peak - self.baseline


def build(model: str, size: int, network_kind: str = "default"):
    import torch

    from hypernet.network import Hypernetwork
    from hypernet.attention import attention_widths

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if model in ("auto", "toy"):
        from hypernet.toy.model import load_toy_pipeline, shipped_model_folder

        if (shipped_model_folder() / "model_index.json").is_file():
            pipe, name = load_toy_pipeline().to(device), "embedded toy model"
        elif model == "toy":
            raise SystemExit("the embedded toy model is not there (src/hypernet/data/toy)")
        else:
            model = "sd15"
    if model in ("sd15", "sd2", "sd2-v"):
        from hypernet.models.checkpoint import pipeline_from_config

        pipe, name = pipeline_from_config(model, seed=0, device=device), f"{model} architecture, random weights"
    elif model not in ("auto", "toy"):
        from hypernet.models.checkpoint import load_pipeline

        pipe, name = load_pipeline(model, device=device), Path(model).name
    pipe.set_progress_bar_config(disable=True)
    widths = attention_widths(pipe.unet)
    if network_kind == "cross":
        widths = [pipe.unet.config.cross_attention_dim]
    network = Hypernetwork.create(sizes=widths, generator_seed=0, name="bench")
    return pipe, network, name, device


def write_images(folder: Path, size: int, count: int = 4) -> Path:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = Image.new("RGB", (size, size), (20 + 40 * index, 30, 60))
        ImageDraw.Draw(image).ellipse([size // 5, size // 5, size * 4 // 5, size * 4 // 5], fill=(230, 200 - 40 * index, 40))
        image.save(folder / f"{index:02d}.png")
        (folder / f"{index:02d}.txt").write_text(f"a yellow circle number {index}, simple")
    return folder


def time_forward(pipe, device, size: int, batch: int, warmup: int, repeats: int) -> float:
    import torch

    latent = size // pipe.vae_scale_factor
    unet = pipe.unet
    dtype = next(unet.parameters()).dtype
    x = torch.randn(batch, unet.config.in_channels, latent, latent, device=device, dtype=dtype)
    context = torch.randn(batch, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    timesteps = torch.full((batch,), 500, device=device)
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            unet(x, timesteps, encoder_hidden_states=context)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


class Interleaved:
    """Step times with a plain UNet forward timed between steps (outside the step), so
    that each step is compared with a forward run under the same machine load."""

    def __init__(self, pipe, device, size: int, batch: int):
        import torch

        unet = pipe.unet
        dtype = next(unet.parameters()).dtype
        latent = size // pipe.vae_scale_factor
        self.unet, self.device = unet, device
        self.inputs = (torch.randn(batch, unet.config.in_channels, latent, latent, device=device, dtype=dtype),
                       torch.full((batch,), 500, device=device),
                       torch.randn(batch, 77, unet.config.cross_attention_dim, device=device, dtype=dtype))
        self.steps, self.forwards = [], []
        self.started = None

    def _sync(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def begin_step(self):
        self._sync()
        self.started = time.perf_counter()

    def end_step(self, measured: bool):
        import torch

        from hypernet import attention

        self._sync()
        if measured:
            self.steps.append(time.perf_counter() - self.started)
        with torch.no_grad(), attention.activate(self.unet, []):  # the plain UNet, no hypernetwork
            start = time.perf_counter()
            x, timesteps, context = self.inputs
            self.unet(x, timesteps, encoder_hidden_states=context)
            self._sync()
            if measured:
                self.forwards.append(time.perf_counter() - start)

    def summary(self) -> dict:
        ratios = sorted(step / forward for step, forward in zip(self.steps, self.forwards))
        return {"step": sorted(self.steps)[len(self.steps) // 2], "forward": sorted(self.forwards)[len(self.forwards) // 2],
                "ratio": ratios[len(ratios) // 2]}


def run_ours(args, pipe, network, device, folder: Path) -> dict:
    from hypernet.training import TrainingConfig, train

    memory = Memory(device)
    timer = Interleaved(pipe, device, args.size, args.batch_size)
    peaks = []

    def on_step(info):
        timer.end_step(measured=info.step > args.warmup)
        if info.step == args.warmup + args.steps:
            peaks.append(memory.peak())  # before the final save
        timer.begin_step()

    config = TrainingConfig(data=folder, learning_rate="1e-5", max_steps=args.warmup + args.steps, batch_size=args.batch_size,
                            width=args.size, height=args.size, save_every=0, preview_every=0, csv_every=0,
                            run_dir=folder.parent / "run", seed=0, gradient_checkpointing="off")
    memory.start()
    train(pipe, network, config, progress=False, on_step=on_step, log=lambda message: None)
    peak, increase = peaks[0]
    return {**timer.summary(), "peak_mib": peak, "increase_mib": increase}


def run_webui_style(args, pipe, network, device, folder: Path) -> dict:
    """The webui's loop as §7.5 describes it, written against diffusers: base weights keep
    requires_grad (their gradients are computed and never used, nor zeroed), gradient
    checkpointing on, text encoder on the accelerator and the prompt encoded every step."""
    import torch

    from hypernet import attention
    from hypernet.training import dataset, loss as loss_module

    memory = Memory(device)
    memory.start()
    timer = Interleaved(pipe, device, args.size, args.batch_size)
    sources = dataset.scan(folder)
    encoded = dataset.encode(sources, pipe.vae, mode="stretch", target=(args.size, args.size), multiple=pipe.vae_scale_factor,
                             sampling="once", flip=False, use_alpha_weight=False, seed=0)
    prompts = [f"a painting of {s.caption}, art by bench" for s in sources]
    schedule = loss_module.noise_schedule(pipe.scheduler.config)
    unet = pipe.unet
    unet.requires_grad_(True)
    unet.enable_gradient_checkpointing()
    network.to(device).train()
    network.requires_grad_(True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    dtype = next(unet.parameters()).dtype
    with attention.activate(unet, [(network, 1.0)]):
        for index in range(args.warmup + args.steps):
            timer.begin_step()
            items = [(index * args.batch_size + j) % len(encoded.examples) for j in range(args.batch_size)]
            latents = torch.cat([encoded.examples[i].latents for i in items]).to(device)
            with torch.no_grad():
                text, _ = pipe.encode_prompt([prompts[i] for i in items], device, 1, False)
            noise = torch.randn(latents.shape, generator=generator).to(device)
            timesteps = torch.randint(schedule.timesteps, (args.batch_size,), generator=generator).to(device)
            loss = loss_module.diffusion_loss(unet, schedule, latents, noise, timesteps, text.to(dtype))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            timer.end_step(measured=index >= args.warmup)
    peak, increase = memory.peak()
    return {**timer.summary(), "peak_mib": peak, "increase_mib": increase}


def child(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe, network, name, device = build(args.model, args.size, args.network)
    with tempfile.TemporaryDirectory() as temporary:
        folder = write_images(Path(temporary) / "data", args.size)
        time_forward(pipe, device, args.size, args.batch_size, 1, 1)  # warm-up; the process's baseline memory
        measure = run_ours if args.variant == "ours" else run_webui_style
        result = measure(args, pipe, network, device, folder)
    result.update(model=name, sizes=network.sizes, parameters=network.parameter_count(),
                  device=str(device), threads=torch.get_num_threads())
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="auto", help="auto, toy, sd15, sd2, sd2-v or a checkpoint path")
    parser.add_argument("--size", type=int, default=128, help="training size in pixels (default 128)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="measured steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--network", choices=["default", "cross"], default="default",
                        help="default: every attention width; cross: the text width only (cross-attention)")
    parser.add_argument("--variant", choices=["ours", "webui"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return
    results = {}
    for variant in ("ours", "webui"):
        command = [sys.executable, __file__, "--variant", variant, "--model", args.model, "--size", str(args.size),
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup), "--network", args.network]
        if args.threads:
            command += ["--threads", str(args.threads)]
        output = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
        if output.returncode or not lines:
            raise SystemExit(f"{variant} failed:\n{output.stderr[-4000:]}")
        results[variant] = json.loads(lines[-1][len("RESULT "):])
    ours, webui = results["ours"], results["webui"]
    unit = "GPU memory allocated" if ours["device"].startswith("cuda") else "RSS"
    print(f"Machine: {machine()}")
    print(f"Model: {ours['model']}, {args.size}x{args.size} px, batch {args.batch_size}, device {ours['device']}, "
          f"{ours['threads']} torch thread(s); hypernetwork sizes {', '.join(map(str, ours['sizes']))} "
          f"(1-2-1, {ours['parameters']:,} parameters); medians of {args.steps} steps after {args.warmup} warm-up, "
          "each step followed by a timed plain UNet forward\n")
    print(f"| | step (s) | UNet forward beside it (s) | step / forward | peak {unit} (MiB) | peak over loaded model (MiB) |")
    print("|---|---|---|---|---|---|")
    for label, result in (("ours: frozen base, cached latents and text, no checkpointing", ours),
                          ("webui-style: trainable UNet weights, checkpointing, text every step", webui)):
        print(f"| {label} | {result['step']:.3f} | {result['forward']:.3f} | {result['ratio']:.2f} | "
              f"{result['peak_mib']:.0f} | {result['increase_mib']:.0f} |")
    print(f"\n(a) our step / one UNet forward: {ours['ratio']:.2f} (goal <= 2.2)")
    print(f"(b) webui-style step / our step: {webui['ratio'] / ours['ratio']:.2f} in forward units, "
          f"{webui['step'] / ours['step']:.2f} in seconds (goal >= 1.8)")
    print(f"(c) peak memory over the loaded model: ours {ours['increase_mib']:.0f} MiB, webui-style "
          f"{webui['increase_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
