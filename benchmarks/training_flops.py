"""Arithmetic of a training step, independent of the machine: floating-point operations of
one of our trainer's steps against one plain UNet forward (the unit of goal (a) in
docs/benchmarks.md), counted with torch's FlopCounterMode on the real trainer.

A step is the forward with the hypernetwork, the backward (input gradients through the
frozen UNet, weight and input gradients of the hypernetwork) and the optimizer update, so
its count bounds from below what any device can reach when it runs backward kernels as
efficiently as forward ones. Rows: the default network (every attention width) and a
cross-attention-only network (the text width). Attention runs through the math kernel so
that its matrix products are counted.

    python benchmarks/training_flops.py [--size 128] [--batch-size 1] [--model sd15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from common import machine  # noqa: E402
from training_speed import write_images  # noqa: E402


def forward_flops(unet, size: int, batch: int, scale: int) -> int:
    latent = size // scale
    x = torch.randn(batch, unet.config.in_channels, latent, latent)
    context = torch.randn(batch, 77, unet.config.cross_attention_dim)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        unet(x, torch.full((batch,), 500), encoder_hidden_states=context)
    return counter.get_total_flops()


def step_flops(pipe, network, folder: Path, size: int, batch: int) -> int:
    """FLOPs of the trainer's second step (the first also encodes the pictures)."""
    from hypernet.training import TrainingConfig, train

    counter = FlopCounterMode(display=False)
    totals = []
    config = TrainingConfig(data=folder, learning_rate="1e-5", max_steps=2, batch_size=batch, width=size, height=size,
                            save_every=0, preview_every=0, csv_every=0, run_dir=folder.parent / "run", seed=0,
                            gradient_checkpointing="off")
    with counter:
        train(pipe, network, config, progress=False, on_step=lambda info: totals.append(counter.get_total_flops()),
              log=lambda message: None)
    return totals[1] - totals[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd15", help="sd15, sd2 or sd2-v (random weights)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    from hypernet.models.checkpoint import pipeline_from_config
    from hypernet.network import Hypernetwork
    from hypernet.attention import attention_widths

    pipe = pipeline_from_config(args.model, seed=0, device=torch.device("cpu"))
    pipe.set_progress_bar_config(disable=True)
    widths = attention_widths(pipe.unet)
    text_width = pipe.unet.config.cross_attention_dim
    print(f"Machine: {machine()} (counts do not depend on it)")
    print(f"Model: {args.model} architecture, {args.size}x{args.size} px, batch {args.batch_size}\n")
    print("| network | parameters | UNet forward (GFLOP) | forward with network (GFLOP) | training step (GFLOP) | step / forward |")
    print("|---|---|---|---|---|---|")
    with sdpa_kernel(SDPBackend.MATH), tempfile.TemporaryDirectory() as temporary:
        folder = write_images(Path(temporary) / "data", args.size)
        plain = forward_flops(pipe.unet, args.size, args.batch_size, pipe.vae_scale_factor)
        from hypernet import attention

        for label, sizes in ((f"default ({'/'.join(map(str, widths))})", widths),
                             (f"cross-attention only ({text_width})", [text_width])):
            network = Hypernetwork.create(sizes=sizes, generator_seed=0, name="flops")
            with attention.activate(pipe.unet, [(network, 1.0)]):
                with_network = forward_flops(pipe.unet, args.size, args.batch_size, pipe.vae_scale_factor)
            step = step_flops(pipe, network, folder, args.size, args.batch_size)
            print(f"| {label} | {network.parameter_count():,} | {plain / 1e9:.1f} | {with_network / 1e9:.1f} | "
                  f"{step / 1e9:.1f} | {step / plain:.2f} |")


if __name__ == "__main__":
    main()
