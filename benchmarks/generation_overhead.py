"""What a hypernetwork costs during generation, measured in one run on one pipeline.

For the SD 1.5 architecture (random weights: speed does not depend on them) with a 1-2-1
network on sizes 768/320/640/1280 (the webui default), linear and relu, and for the
embedded toy model with the packaged `water` network: the per-image time without a
hypernetwork, with it folded into the attention weights (the default for linear
networks), and with the MLPs run as written (`fold=False`), interleaved, medians; the
FLOP share the MLPs add to a UNet forward; the time to switch network or multiplier; the
first fold of a network (the multiplier-free products, once per network and model).
With `--compile`, the toy model's UNet under `torch.compile` (inductor; `--compile-sd15`
for the SD 1.5 architecture too, minutes on a CPU): none vs folded vs a relu network
(its MLPs traced into the graph, `hypernet.compiled`), and the recompilations and graph
breaks across network and multiplier switches of each kind.

    python benchmarks/generation_overhead.py [--size 128] [--steps 3] [--repeats 3] [--compile] [--skip-sd15]
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import machine, median

from hypernet import attention
from hypernet.folding import FoldCache
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.models.checkpoint import pipeline_from_config
from hypernet.network import Hypernetwork


class FixedLibrary:
    """Networks by name, already loaded (a switch never reads a file); other names from
    `fallback`, a library folder."""

    def __init__(self, networks, fallback=None):
        self.networks = networks
        self.fallback = fallback

    def load(self, name):
        return self.networks[name] if name in self.networks or self.fallback is None else self.fallback.load(name)


def unet_flops(pipe, size: int, chain, context_width: int, fold: bool = False) -> int:
    latent = size // pipe.vae_scale_factor
    sample = torch.randn(2, 4, latent, latent)
    context = torch.randn(2, 77, context_width)
    with torch.no_grad(), attention.activate(pipe.unet, chain, fold=fold):
        pipe.unet(sample, 500, context)  # the text context's hypernetwork output is cached from here on
        with FlopCounterMode(display=False) as counter:
            pipe.unet(sample, 500, context)
    return counter.get_total_flops()


def timed(generator: Generator, prompt: str, size: int, steps: int, fold: bool = True) -> float:
    generator.fold = fold
    request = Request(prompt=prompt, steps=steps, seed=1, width=size, height=size, sampler="Euler a")
    start = time.perf_counter()
    generator.generate(request, progress=False)
    return time.perf_counter() - start


def compare(generator, tag: str, size: int, steps: int, repeats: int) -> dict:
    """Interleaved plain / folded / MLP / plain-again runs of one prompt; medians, and
    minima under `best-`. Plain-again against plain is the run's own noise (an A/A test):
    a ratio closer to 1 than that cannot be told from 1 in this run."""
    prompt = "a red circle on a blue background"
    for fold in (True, False):
        timed(generator, f"{prompt} {tag}", size, steps, fold)  # warm-up (and the first fold)
    timed(generator, prompt, size, steps)
    runs = {"plain": [], "folded": [], "mlp": [], "again": []}
    for _ in range(repeats):
        runs["plain"].append(timed(generator, prompt, size, steps))
        runs["folded"].append(timed(generator, f"{prompt} {tag}", size, steps, True))
        runs["mlp"].append(timed(generator, f"{prompt} {tag}", size, steps, False))
        runs["again"].append(timed(generator, prompt, size, steps))
    generator.fold = True
    return {name: median(values) for name, values in runs.items()} | {f"best-{name}": min(values) for name, values in runs.items()}


def switch_ms(generator, pipe, prompts) -> float:
    """The longest activation among 20 tag changes, every network already folded once
    (a first fold is its own row)."""
    worst = 0.0
    for prompt in prompts:
        _, _, named, _ = generator.resolve_networks(prompt)
        with attention.activate(pipe.unet, [(n, m) for _, n, m in named], cache=generator._fold_cache):
            pass
    for prompt in prompts * 5:
        start = time.perf_counter()
        _, _, named, _ = generator.resolve_networks(prompt)
        with attention.activate(pipe.unet, [(n, m) for _, n, m in named], cache=generator._fold_cache):
            pass
        worst = max(worst, time.perf_counter() - start)
    return worst * 1000


def activation_ms(generator, chain) -> float:
    """Median time of `activate` enter + exit with the generator's warm fold cache: what a
    folded network adds to a generation besides its (identical) UNet calls."""
    import statistics

    times = []
    for _ in range(31):
        start = time.perf_counter()
        with torch.no_grad(), attention.activate(generator.pipe.unet, chain, cache=generator._fold_cache):
            pass
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[1:])


def first_fold_ms(pipe, network) -> float:
    start = time.perf_counter()
    with torch.no_grad(), attention.activate(pipe.unet, [(network, 1.0)], cache=FoldCache()):
        pass
    return (time.perf_counter() - start) * 1000


def max_difference(pipe, network, size: int, context_width: int) -> float:
    latent = size // pipe.vae_scale_factor
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, latent, latent, generator=generator)
    context = torch.randn(2, 77, context_width, generator=generator)
    with torch.no_grad():
        outputs = []
        for fold in (True, False):
            with attention.activate(pipe.unet, [(network, 1.0)], fold=fold):
                outputs.append(pipe.unet(sample, 500, context).sample)
    return (outputs[0] - outputs[1]).abs().max().item()


def sd15_rows(args) -> list[str]:
    print("building the SD 1.5 architecture...", flush=True)
    pipe = pipeline_from_config("sd15")
    sizes = [768, 320, 640, 1280]
    networks = {
        "one": Hypernetwork.create(sizes=sizes, generator_seed=1, name="one", weight_init="XavierNormal"),
        "two": Hypernetwork.create(sizes=sizes, generator_seed=2, name="two", weight_init="XavierNormal"),
        "relu": Hypernetwork.create(sizes=sizes, generator_seed=3, name="relu", activation="relu", weight_init="XavierNormal"),
    }
    generator = Generator(pipe, library=FixedLibrary(networks), model=ModelInfo("sd15-random"))
    base = unet_flops(pipe, args.size, [], 768)
    share = (unet_flops(pipe, args.size, [(networks["one"], 1.0)], 768) - base) / base
    rows = [f"| first fold of a network (ms, products W·A for every attention layer) | {first_fold_ms(pipe, networks['two']):.0f} |",
            f"| max abs difference folded vs MLP, UNet output (1-2-1 linear, Xavier init) | {max_difference(pipe, networks['one'], args.size, 768):.2e} |"]
    for name, label in (("one", "linear"), ("relu", "relu")):
        print(f"measuring {label}...", flush=True)
        times = compare(generator, f"<hypernet:{name}:1>", args.size, args.steps, args.repeats)
        rows += [
            f"| {label}: per image, no hypernetwork (s) | {times['plain']:.2f} |",
            f"| {label}: per image, folded (default) (s) | {times['folded']:.2f} |" if label == "linear" else
            f"| {label}: per image, default (relu cannot fold: MLPs) (s) | {times['folded']:.2f} |",
            f"| {label}: per image, MLPs (`--no-fold`) (s) | {times['mlp']:.2f} |",
            f"| {label}: time ratio default / none | **{times['folded'] / times['plain']:.3f}** |",
            f"| {label}: time ratio MLPs / none | {times['mlp'] / times['plain']:.3f} |",
            f"| {label}: time ratio none again / none (this run's noise, A/A) | {times['again'] / times['plain']:.3f} |",
        ]
    rows.append(f"| FLOP share the MLPs add to a UNet forward | {share:.2%} (relu bound 1 + share + 0.02 = {1 + share + 0.02:.3f}) |")
    prompts = ["x <hypernet:one:1>", "x <hypernet:two:1>", "x <hypernet:two:0.5>", "x <hypernet:one:0.7> <hypernet:two:0.2>"]
    rows.append(f"| switch network or multiplier between generations (ms, max of 20; folds cached) | {switch_ms(generator, pipe, prompts):.1f} |")
    if args.compile_sd15:
        networks["relu2"] = Hypernetwork.create(sizes=sizes, generator_seed=4, name="relu2", activation="relu", weight_init="XavierNormal")
        rows += compiled_rows(generator, ("one", "two"), args.size, args.steps, args.repeats, ("relu", "relu2"), share)
    return rows


def compiled_rows(generator, names: tuple[str, str], size: int, steps: int, repeats: int,
                  relu_names: tuple[str, str] | None = None, share: float | None = None) -> list[str]:
    """Under torch.compile (inductor): per-image time with no network, a folded one and
    (`relu_names`) a relu one running its MLPs, interleaved after one warm-up of each; the
    recompilations and graph breaks across two networks × five multipliers of each kind."""
    from torch._dynamo.utils import counters

    print("compiling (inductor)...", flush=True)
    pipe = generator.pipe
    eager_unet = pipe.unet
    pipe.unet = torch.compile(eager_unet)
    prompt = "a red circle on a blue background"
    first, second = names
    kinds = {"none": prompt, "folded": f"{prompt} <hypernet:{first}:1>"}
    if relu_names:
        kinds["relu"] = f"{prompt} <hypernet:{relu_names[0]}:1>"
    kinds["none again"] = prompt  # the run's own noise (A/A)
    try:
        for text in kinds.values():
            timed(generator, text, size, steps)
        times = {kind: [] for kind in kinds}
        for _ in range(repeats):
            for kind, text in kinds.items():
                times[kind].append(timed(generator, text, size, steps))
        switches = {"folded": (second, first)} | ({"relu": (relu_names[1], relu_names[0])} if relu_names else {})
        recompiles = {}
        for kind, pair in switches.items():
            frames, breaks = counters["frames"]["total"], sum(counters["graph_break"].values())
            for name in pair:
                for multiplier in (0.25, 0.5, 0.75, 1.0, 1.25):
                    timed(generator, f"{prompt} <hypernet:{name}:{multiplier}>", size, 2)
            recompiles[kind] = (counters["frames"]["total"] - frames, sum(counters["graph_break"].values()) - breaks)
    finally:
        pipe.unet = eager_unet
    medians = {kind: median(values) for kind, values in times.items()}
    rows = [f"| compiled: per image, {' / '.join(kinds)} (s) | {' / '.join(f'{medians[kind]:.3f}' for kind in kinds)} |",
            f"| compiled: time ratio folded / none | **{medians['folded'] / medians['none']:.3f}** (best of {repeats}: "
            f"{min(times['folded']) / min(times['none']):.3f}) |",
            f"| compiled: time ratio none again / none (this run's noise, A/A) | {medians['none again'] / medians['none']:.3f} |",
            f"| compiled: recompilations / graph breaks across {first}, {second} × 5 multipliers (folded) | "
            f"**{recompiles['folded'][0]}** / {recompiles['folded'][1]} |"]
    if relu_names:
        bound = f" (bound 1 + FLOP share + 0.02 = {1 + share + 0.02:.3f})" if share is not None else ""
        rows += [f"| compiled: time ratio relu (MLPs) / none | **{medians['relu'] / medians['none']:.3f}** (best of {repeats}: "
                 f"{min(times['relu']) / min(times['none']):.3f}){bound} |",
                 f"| compiled: recompilations / graph breaks across {relu_names[0]}, {relu_names[1]} × 5 multipliers (MLPs) | "
                 f"**{recompiles['relu'][0]}** / {recompiles['relu'][1]} |"]
    return rows


def paired_ratios(unet, call, chains: dict, cache, triples: int = 40, block: int = 10) -> dict:
    """UNet calls in blocks of `block`: none, each chain, none again, `triples` times; per
    chain the median and quartiles of (its block / the mean of the none blocks around it),
    and the A/A ratio of the two none blocks. Adjacent blocks share the machine's state of
    the moment, so this resolves a per-step cost far finer than whole-image medians."""
    import statistics

    def timed_block(chain):
        with torch.no_grad(), attention.activate(unet, chain, cache=cache):
            start = time.perf_counter()
            for _ in range(block):
                call()
            return time.perf_counter() - start

    for chain in [[], *chains.values()]:
        timed_block(chain)  # warm (and compile)
    ratios = {name: [] for name in [*chains, "A/A"]}
    for _ in range(triples):
        before = timed_block([])
        measured = {name: timed_block(chain) for name, chain in chains.items()}
        after = timed_block([])
        for name, seconds in measured.items():
            ratios[name].append(seconds / ((before + after) / 2))
        ratios["A/A"].append(after / before)
    return {name: (statistics.median(values), *statistics.quantiles(values, n=4)[::2]) for name, values in ratios.items()}


def paired_rows(generator, chains: dict, size: int, compiled: bool) -> list[str]:
    pipe = generator.pipe
    unet = pipe.unet
    latent = size // pipe.vae_scale_factor
    sample = torch.randn(2, unet.config.in_channels, latent, latent)
    context = torch.randn(2, 77, pipe.text_encoder.config.hidden_size)
    target = torch.compile(unet) if compiled else unet
    result = paired_ratios(unet, lambda: target(sample, 500, context), chains, generator._fold_cache)
    label = "compiled" if compiled else "eager"
    return [f"| {label}, paired UNet calls (blocks of 10, median of 40 [quartiles]): {name} / none | "
            f"**{median_:.3f}** [{low:.3f}, {high:.3f}] |" for name, (median_, low, high) in result.items()]


def toy_rows(args) -> list[str]:
    from hypernet.cli.defaults import toy_model_loader
    from hypernet.loading import load_generator

    print("measuring the toy model with water...", flush=True)
    generator = load_generator(None, hypernet_dir="models/hypernetworks", progress=False, default_model=toy_model_loader())
    size = generator.native_size
    widths = attention.attention_widths(generator.pipe.unet)
    relu = {name: Hypernetwork.create(sizes=widths, generator_seed=seed, name=name, activation="relu", weight_init="XavierNormal")
            for seed, name in ((11, "relu-a"), (12, "relu-b"))}
    generator.library = FixedLibrary(relu, generator.library)
    context_width = generator.pipe.text_encoder.config.hidden_size
    base = unet_flops(generator.pipe, size, [], context_width)
    share = (unet_flops(generator.pipe, size, [(relu["relu-a"], 1.0)], context_width) - base) / base
    times = compare(generator, "<hypernet:water:1>", size, 20, args.repeats * 5)
    _, _, named, _ = generator.resolve_networks("x <hypernet:water:1>")
    water = named[0][1]
    paired = {"water (folded)": [(water, 1.0)], "relu-a (MLPs)": [(relu["relu-a"], 1.0)]}
    folded_flops = unet_flops(generator.pipe, size, [(water, 1.0)], context_width, fold=True) / base
    activation = activation_ms(generator, [(water, 1.0)])
    return [f"| toy + water (20 steps, {size}²): per image, none / folded / MLPs (s) | {times['plain']:.3f} / {times['folded']:.3f} / {times['mlp']:.3f} |",
            f"| toy + water: time ratio folded / none | **{times['folded'] / times['plain']:.3f}** (MLPs: {times['mlp'] / times['plain']:.3f}) |",
            f"| toy: time ratio none again / none (this run's noise, A/A) | {times['again'] / times['plain']:.3f} |",
            f"| toy + water: best of {args.repeats * 5}: ratio folded / none, MLPs / none | {times['best-folded'] / times['best-plain']:.3f}, {times['best-mlp'] / times['best-plain']:.3f} |",
            f"| toy + water: FLOPs of a UNet forward, folded / none | {folded_flops:.4f} |",
            f"| toy + water: activate + restore, folded, warm cache (median of 30, ms) | {activation:.2f} "
            f"({activation / 1000 / times['plain']:.2%} of a 20-step image) |",
            f"| toy + water: max abs difference folded vs MLP, UNet output | {max_difference(generator.pipe, water, size, generator.pipe.text_encoder.config.hidden_size):.2e} |",
            f"| toy + relu-a (1-2-1 relu, Xavier): FLOP share the MLPs add to a UNet forward | {share:.2%} |",
            *(compiled_rows(generator, ("water", "neon"), size, 20, args.repeats * 5, ("relu-a", "relu-b"), share)
              if args.compile else []),
            *paired_rows(generator, paired, size, compiled=False),
            *(paired_rows(generator, paired, size, compiled=True) if args.compile else [])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure under torch.compile (needs a C++ compiler)")
    parser.add_argument("--skip-sd15", action="store_true", help="only the toy model")
    parser.add_argument("--compile-sd15", action="store_true", help="compile the SD 1.5 UNet too (minutes on a CPU)")
    args = parser.parse_args()
    rows = toy_rows(args) + ([] if args.skip_sd15 else sd15_rows(args))
    print(f"\nMachine: {machine()}\n")
    print(f"SD 1.5 architecture: {args.size}×{args.size}, {args.steps} steps Euler a, CFG (batch 2 through the UNet), batch 1, fp32\n")
    print("| measure | value |")
    print("|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
