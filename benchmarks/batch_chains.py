"""Eight requests with eight different hypernetworks: one UNet batch (each image through
its own chain, `Generator.generate_together`) vs one request after another, measured in
one run, interleaved, medians; on the embedded toy model (the packaged `water` and
`neon` plus six random 1-2-1 networks, half linear, half relu) and on the SD 1.5
architecture (random weights) at 128².

    python benchmarks/batch_chains.py [--steps 10] [--repeats 3] [--sd15-steps 4] [--sd15-repeats 1] [--skip-sd15]

The SD 1.5 architecture takes minutes per repeat on a CPU (its VAE decode and the
UNet's convolutions dominate), hence its own, smaller settings.
"""

import argparse
import time

import numpy as np

from common import machine, median

from hypernet import attention
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.network import Hypernetwork


class Networks:
    """A library of networks already in memory: a run never reads a file."""

    def __init__(self, networks):
        self.networks = networks

    def load(self, name):
        return self.networks[name]


def random_networks(sizes, count: int, start: int = 0) -> dict:
    return {f"n{start + index}": Hypernetwork.create(sizes=sizes, generator_seed=start + index, name=f"n{start + index}",
                                                     activation="relu" if index % 2 else "linear",
                                                     weight_init="XavierNormal")
            for index in range(count)}


def measure(generator: Generator, names, size: int, steps: int, repeats: int) -> tuple[float, float, float]:
    """(seconds one after another, seconds as one batch, max pixel difference)."""
    requests = [Request(f"a red circle on a blue background <hypernet:{name}:1>", steps=steps, seed=index,
                        width=size, height=size, sampler="Euler a") for index, name in enumerate(names)]
    alone = [generator.generate(request, progress=False)[0] for request in requests]  # warm-up, first folds
    together = [results[0] for results in generator.generate_together(requests, progress=False)]
    difference = max(int(np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16)).max())
                     for a, b in zip(alone, together))
    sequential, batched = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for request in requests:
            generator.generate(request, progress=False)
        sequential.append(time.perf_counter() - start)
        start = time.perf_counter()
        generator.generate_together(requests, progress=False)
        batched.append(time.perf_counter() - start)
    return median(sequential), median(batched), difference


def rows(label: str, generator, names, size: int, steps: int, repeats: int) -> list[str]:
    print(f"measuring {label}...", flush=True)
    sequential, batched, difference = measure(generator, names, size, steps, repeats)
    count = len(names)
    return [f"| {label}: 8 requests one after another (s; images/s) | {sequential:.2f}; {count / sequential:.2f} |",
            f"| {label}: the same 8 as one batch (s; images/s) | {batched:.2f}; {count / batched:.2f} |",
            f"| {label}: speed-up (images/s, batch / one after another) | **{sequential / batched:.2f}×** |",
            f"| {label}: largest pixel difference batch vs alone (0-255) | {difference} |"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sd15-steps", type=int, default=4)
    parser.add_argument("--sd15-repeats", type=int, default=1)
    parser.add_argument("--skip-sd15", action="store_true")
    args = parser.parse_args()
    from hypernet.cli.defaults import toy_model_loader
    from hypernet.loading import load_generator

    toy = load_generator(None, hypernet_dir="models/hypernetworks", progress=False, default_model=toy_model_loader())
    packaged = {name: toy.library.load(name) for name in ("water", "neon")}
    networks = {**packaged, **random_networks(attention.attention_widths(toy.pipe.unet), 6)}
    toy.library = Networks(networks)
    table = rows(f"toy ({toy.native_size}², {args.steps} steps)", toy, list(networks), toy.native_size, args.steps,
                 args.repeats)
    if not args.skip_sd15:
        from hypernet.models.checkpoint import pipeline_from_config

        print("building the SD 1.5 architecture...", flush=True)
        pipe = pipeline_from_config("sd15")
        networks = random_networks([768, 320, 640, 1280], 8)
        sd15 = Generator(pipe, library=Networks(networks), model=ModelInfo("sd15-random"))
        table += rows(f"SD 1.5 architecture (128², {args.sd15_steps} steps)", sd15, list(networks), 128,
                      args.sd15_steps, args.sd15_repeats)
    print(f"\nmachine: {machine()}\n")
    print("| measure | value |\n|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
