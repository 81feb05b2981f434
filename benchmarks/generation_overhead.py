"""What a hypernetwork costs during generation, measured in one run on one pipeline.

SD 1.5 architecture (random weights: speed does not depend on them), a 1-2-1 hypernetwork
with sizes 768/320/640/1280 (the webui default). Reports the per-image time with and
without the hypernetwork (interleaved runs, medians), the FLOP share the hypernetwork
adds to a UNet forward (torch's FLOP counter), the acceptance bound 1 + share + 0.02, and
the time to switch network or multiplier between two generations.

    python benchmarks/generation_overhead.py [--size 256] [--steps 4] [--repeats 3]
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import machine, median

from hypernet import attention
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.models.checkpoint import pipeline_from_config
from hypernet.network import Hypernetwork


class FixedLibrary:
    """Two networks by name, already loaded (a switch never reads a file)."""

    def __init__(self, networks):
        self.networks = networks

    def load(self, name):
        return self.networks[name]


def unet_flops(pipe, size: int, chain) -> int:
    latent = size // pipe.vae_scale_factor
    sample = torch.randn(2, 4, latent, latent)
    context = torch.randn(2, 77, 768)
    with torch.no_grad(), attention.activate(pipe.unet, chain):
        pipe.unet(sample, 500, context)  # the text context's hypernetwork output is cached from here on
        with FlopCounterMode(display=False) as counter:
            pipe.unet(sample, 500, context)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--family", default="sd15")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print("building the pipeline...", flush=True)
    pipe = pipeline_from_config(args.family)
    sizes = [768, 320, 640, 1280] if args.family == "sd15" else [1024, 320, 640, 1280]
    one = Hypernetwork.create(sizes=sizes, generator_seed=1, name="one")
    two = Hypernetwork.create(sizes=sizes, generator_seed=2, name="two")
    generator = Generator(pipe, library=FixedLibrary({"one": one, "two": two}), model=ModelInfo("sd15-random"))

    base_flops = unet_flops(pipe, args.size, [])
    hn_flops = unet_flops(pipe, args.size, [(one, 1.0)])
    share = (hn_flops - base_flops) / base_flops

    def run(prompt):
        request = Request(prompt=prompt, steps=args.steps, seed=1, width=args.size, height=args.size, sampler="Euler a")
        start = time.perf_counter()
        generator.generate(request, progress=False)
        return time.perf_counter() - start

    print("measuring...", flush=True)
    run("warm up")
    run("warm up <hypernet:one:1>")
    plain, with_hn = [], []
    for _ in range(args.repeats):
        plain.append(run("a photo of a cat"))
        with_hn.append(run("a photo of a cat <hypernet:one:1>"))
    ratio = median(with_hn) / median(plain)

    # switching: what happens between two generations when only the tags change
    switch_times = []
    for prompt in ["x <hypernet:one:1>", "x <hypernet:two:1>", "x <hypernet:two:0.5>", "x <hypernet:one:0.7> <hypernet:two:0.2>"] * 5:
        start = time.perf_counter()
        _, _, named, _ = generator.resolve_networks(prompt)
        with attention.activate(pipe.unet, [(n, m) for _, n, m in named]):
            pass
        switch_times.append(time.perf_counter() - start)

    print(f"Machine: {machine()}\n")
    print(f"{args.family} architecture, {args.size}x{args.size}, {args.steps} steps Euler a, CFG (batch 2 through the UNet), batch 1, fp32\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| per image, no hypernetwork (s, median of {args.repeats}) | {median(plain):.2f} |")
    print(f"| per image, 1-2-1 hypernetwork 768/320/640/1280 (s) | {median(with_hn):.2f} |")
    print(f"| time ratio with / without | {ratio:.3f} |")
    print(f"| FLOP share the hypernetwork adds to a UNet forward | {share:.3%} |")
    print(f"| bound 1 + share + 0.02 | {1 + share + 0.02:.3f} |")
    print(f"| within bound | {'yes' if ratio <= 1 + share + 0.02 else 'NO'} |")
    print(f"| switch network or multiplier between generations (ms, max of {len(switch_times)}) | {max(switch_times) * 1000:.2f} |")


if __name__ == "__main__":
    main()
