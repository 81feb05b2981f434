"""SDXL at 1024²: one hypernetwork training step (hypernet's own loss: pooled vector and
size conditioning included) and one UNet forward with and without a 2048/640/1280
network, on the full-size SDXL base UNet built from the shipped config with random
weights (the values do not change the time). Prints a markdown table.

    python benchmarks/sdxl_training_step.py [--size 1024] [--batch 1] [--steps 5] [--dtype bf16|fp16|fp32]
                                            [--config FOLDER] [--device cuda]

The UNet runs in --dtype, the hypernetwork's weights stay fp32 under autocast (as the
trainer runs them); AdamW on the network only; the base is frozen. `--config` names
another diffusers config folder (a UNet config in FOLDER/unet), for a quick check on a
small model without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device, steps: int) -> list[float]:
    for _ in range(2):  # warm-up: kernels chosen, allocator grown
        function()
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def peak_gib(device, function) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    function()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    from diffusers import UNet2DConditionModel

    from hypernet import attention
    from hypernet.models.sdxl import sdxl_config_directory
    from hypernet.network import Hypernetwork
    from hypernet.prompt.sdxl import DualConditioning
    from hypernet.training.loss import diffusion_loss, noise_schedule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    folder = args.config or sdxl_config_directory("sdxl")
    config = UNet2DConditionModel.load_config(folder / "unet")
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config)
    torch.nn.Module.to(unet, dtype=dtype)  # diffusers' own .to warns on every dtype cast
    unet.requires_grad_(False).eval()
    build_seconds = time.perf_counter() - started
    context_width = int(config["cross_attention_dim"])
    pooled_width = int(config["projection_class_embeddings_input_dim"]) - 6 * int(config["addition_time_embed_dim"])
    sizes = attention.attention_widths(unet)
    network = Hypernetwork.create(sizes=sizes, weight_init="XavierNormal", generator_seed=1, name="bench")
    network.to(device=device, dtype=torch.float32)
    schedule = noise_schedule({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                               "num_train_timesteps": 1000, "prediction_type": "epsilon"})
    latent = args.size // 8
    generator = torch.Generator(device).manual_seed(0)
    latents = torch.randn(args.batch, 4, latent, latent, device=device, generator=generator)
    noise = torch.randn(latents.shape, device=device, generator=generator)
    timesteps = torch.randint(0, 1000, (args.batch,), device=device, generator=generator)
    conditioning = DualConditioning(torch.randn(args.batch, 77, context_width, device=device, generator=generator),
                                    torch.randn(args.batch, pooled_width, device=device, generator=generator))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-5, fused=device.type == "cuda")
    autocast = dict(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(**autocast):
            loss = diffusion_loss(unet, schedule, latents, noise, timesteps, conditioning, None, 8)
        loss.backward()
        optimizer.step()

    added = {"text_embeds": conditioning.pooled.to(dtype),
             "time_ids": torch.tensor([[args.size, args.size, 0, 0, args.size, args.size]] * args.batch,
                                      device=device, dtype=dtype)}

    def forward() -> None:
        with torch.no_grad(), torch.autocast(**autocast):
            unet(latents.to(dtype), timesteps, encoder_hidden_states=conditioning.context.to(dtype),
                 added_cond_kwargs=added)

    rows = []
    plain = timed(forward, device, args.steps)
    rows.append(("UNet forward, no hypernetwork (s)", f"{min(plain):.3f}", f"{sorted(plain)[len(plain) // 2]:.3f}"))
    network.eval()
    with attention.activate(unet, [(network, 1.0)], fold=False):
        with_network = timed(forward, device, args.steps)
    rows.append((f"UNet forward, hypernetwork {'/'.join(map(str, sizes))} as MLPs (s)", f"{min(with_network):.3f}",
                 f"{sorted(with_network)[len(with_network) // 2]:.3f}"))
    network.train()
    network.requires_grad_(True)
    with attention.activate(unet, [(network, 1.0)]):
        steps = timed(train_step, device, args.steps)
        memory = peak_gib(device, train_step)
    rows.append(("training step, batch %d (s)" % args.batch, f"{min(steps):.3f}", f"{sorted(steps)[len(steps) // 2]:.3f}"))
    unet.enable_gradient_checkpointing()
    with attention.activate(unet, [(network, 1.0)]):
        checkpointed = timed(train_step, device, args.steps)
        checkpointed_memory = peak_gib(device, train_step)
    rows.append(("training step, gradient checkpointing (s)", f"{min(checkpointed):.3f}",
                 f"{sorted(checkpointed)[len(checkpointed) // 2]:.3f}"))
    unet_parameters = sum(p.numel() for p in unet.parameters())
    print(f"machine: {machine()}")
    print(f"SDXL UNet {unet_parameters / 1e9:.3f} B parameters ({args.dtype}, built in {build_seconds:.1f} s), "
          f"{args.size}x{args.size}, hypernetwork sizes {sizes}, {network.parameter_count():,} parameters (fp32); "
          f"{args.steps} timed runs after 2 warm-ups")
    print()
    print("| measure | best | median |")
    print("|---|---|---|")
    for label, best, middle in rows:
        print(f"| {label} | {best} | {middle} |")
    if memory is not None:
        print(f"| peak GPU memory, training step / with checkpointing (GiB) | {memory:.1f} | {checkpointed_memory:.1f} |")


if __name__ == "__main__":
    main()
