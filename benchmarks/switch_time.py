"""How long a change of hypernetwork or multiplier takes between generations, and where
the time goes. SD 1.5 architecture (random weights, the shipped `sd15` config), fp32.

`activate` enter + exit with a warm `FoldCache` (every network folded once before), for a
1-2-1 linear network on 768/320/640/1280 (folds): alternating two networks (the cache's two
buffer sets still hold both: nothing is written), three networks in turn (one more than
the sets kept: every switch writes the folded weights), and one network with a new
multiplier each time; medians and maxima. Beside it the floor of a folded
switch, the additions `W + m·(W·A)` into existing buffers for every folded tensor, and one
walk over the UNet's modules. Then the MLP path (a relu network, not foldable): its switch
copies the network into the stand-ins a compiled UNet reads (`hypernet.compiled`).

    python benchmarks/switch_time.py [--switches 20] [--threads N]

Runs against any version of the package that has `attention.activate(..., cache=)`, so
the same script gives the before and after of a change (PYTHONPATH to the older tree).
"""

import argparse
import statistics
import time

import torch

from common import machine

from hypernet import attention
from hypernet.folding import FoldCache, foldable_layer
from hypernet.models.checkpoint import pipeline_from_config
from hypernet.network import Hypernetwork

SIZES = [768, 320, 640, 1280]


def switch_ms(unet, chains, cache) -> list[float]:
    times = []
    for chain in chains:
        start = time.perf_counter()
        with torch.no_grad(), attention.activate(unet, chain, cache=cache):
            pass
        times.append((time.perf_counter() - start) * 1000)
    return times


def additions_ms(unet, repeats: int) -> float:
    """`torch.add(W, P, alpha=m, out=buffer)` for every tensor a fold writes (P stands in
    for the cached product): the work no bookkeeping can remove."""
    triples = []
    for module in unet.modules():
        layer = foldable_layer(module) if hasattr(module, "to_k") else None
        if layer is not None:
            for tensor in (layer.to_k.weight, layer.to_v.weight, layer.to_out.bias):
                base = tensor.detach()
                triples.append((base, torch.randn_like(base), torch.empty_like(base)))
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        for base, product, out in triples:
            torch.add(base, product, alpha=0.5 + index / 100, out=out)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def walk_ms(unet) -> float:
    start = time.perf_counter()
    sum(1 for _ in unet.modules())
    return (time.perf_counter() - start) * 1000


def describe(times: list[float]) -> str:
    return f"{statistics.median(times):.1f} / {max(times):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--switches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("building the SD 1.5 architecture...", flush=True)
    unet = pipeline_from_config("sd15").unet
    one, two, three = (Hypernetwork.create(sizes=SIZES, generator_seed=seed, weight_init="XavierNormal") for seed in (1, 2, 5))
    relu = [Hypernetwork.create(sizes=SIZES, generator_seed=seed, activation="relu", weight_init="XavierNormal")
            for seed in (3, 4)]
    cache = FoldCache()
    switch_ms(unet, [[(three, 1.0)], [(one, 0.5)], [(relu[0], 1.0)], [(relu[1], 1.0)], [(one, 1.0)], [(two, 1.0)]], cache)  # warm
    count = args.switches
    networks = switch_ms(unet, [[((one, two)[index % 2], 1.0)] for index in range(count)], cache)
    turns = switch_ms(unet, [[((one, two, three)[index % 3], 1.0)] for index in range(count)], cache)
    multipliers = switch_ms(unet, [[(one, 0.3 + index / count)] for index in range(count)], cache)
    mlp = switch_ms(unet, [[(relu[index % 2], 0.3 + index / count)] for index in range(count)], cache)
    print(f"\nMachine: {machine()}, torch threads {torch.get_num_threads()}\n")
    print("| switch (activate enter + exit, warm FoldCache), ms | median / max |")
    print("|---|---|")
    print(f"| folded: alternate two linear networks ({count} switches; both still in the cache's buffer sets) | {describe(networks)} |")
    print(f"| folded: three linear networks in turn ({count}; every switch writes the folded weights) | {describe(turns)} |")
    print(f"| folded: one linear network, a new multiplier each time ({count}) | {describe(multipliers)} |")
    print(f"| floor: the additions alone, every folded tensor (median of {count}) | {additions_ms(unet, count):.1f} |")
    print(f"| one walk over the UNet's modules (`unet.modules()`) | {walk_ms(unet):.2f} |")
    print(f"| MLP path: alternate two relu networks, new multipliers ({count}) | {describe(mlp)} |")


if __name__ == "__main__":
    main()
