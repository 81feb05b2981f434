"""How closely a folded network matches its MLPs, for the linear files people have.

Each case is written to disk in a webui layout and loaded back through `hypernet.load`
(so the file's own reading path is part of it), then applied to the SD 1.5 architecture
(random weights, the shipped `sd15` config, fp32): the UNet output with the network
folded into `to_k`/`to_v` (the default) against the MLPs run as written (`fold=False`),
max abs difference, beside how much the network changes the output at all.

    python benchmarks/fold_accuracy.py [--size 64]

Cases: the webui's default (1-2-1 linear on 768/320/640/1280, written by hypernet in the
webui's `.pt` layout); a deeper 1-2-2-1 structure with dropout in the file (off in eval,
so still affine); a 1-1.5-1 cross-attention-only network; an old file without metadata
(webui defaults on load); the NovelAI legacy layout (`linear1`/`linear2` keys, no
activation). Weights are Xavier-initialised and perturbed so the network visibly
changes the output.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

import hypernet  # noqa: E402
from hypernet import attention  # noqa: E402
from hypernet.models.checkpoint import pipeline_from_config  # noqa: E402
from hypernet.network import Hypernetwork  # noqa: E402

SIZES = [768, 320, 640, 1280]


def perturbed(network: Hypernetwork, seed: int) -> Hypernetwork:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return network


def cases(folder: Path) -> dict[str, Path]:
    paths = {}
    default = perturbed(Hypernetwork.create(sizes=SIZES, name="default", weight_init="XavierNormal", generator_seed=1), 1)
    paths["webui default: 1-2-1 linear, 4 widths (.pt)"] = hypernet.save(default, folder / "default.pt")
    deep = perturbed(Hypernetwork.create(sizes=SIZES, name="deep", layer_structure=(1, 2, 2, 1), dropout_structure=(0, 0.1, 0.1, 0),
                                         weight_init="XavierNormal", generator_seed=2), 2)
    paths["1-2-2-1 linear with dropout in the file (.pt)"] = hypernet.save(deep, folder / "deep.pt")
    cross = perturbed(Hypernetwork.create(sizes=[768], name="cross", layer_structure=(1, 1.5, 1), weight_init="XavierNormal",
                                          generator_seed=3), 3)
    paths["1-1.5-1, cross-attention only (.safetensors)"] = hypernet.save(cross, folder / "cross.safetensors")
    old = perturbed(Hypernetwork.create(sizes=SIZES, weight_init="XavierNormal", generator_seed=4), 4)
    modules = {size: tuple(module.state_dict() for module in old.pair(size)) for size in SIZES}
    torch.save({**modules, "layer_structure": [1, 2, 1], "activation_func": "linear", "name": "old"}, folder / "old.pt")
    paths["old webui file, no metadata beyond structure (.pt)"] = folder / "old.pt"
    legacy = {}
    generator = torch.Generator().manual_seed(5)
    for size in SIZES:
        legacy[size] = tuple({"linear1.weight": torch.randn(2 * size, size, generator=generator) / size ** 0.5,
                              "linear1.bias": torch.randn(2 * size, generator=generator) * 0.02,
                              "linear2.weight": torch.randn(size, 2 * size, generator=generator) / (2 * size) ** 0.5,
                              "linear2.bias": torch.randn(size, generator=generator) * 0.02} for _ in range(2))
    torch.save(legacy, folder / "novelai.pt")
    paths["NovelAI legacy layout (linear1/linear2, .pt)"] = folder / "novelai.pt"
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64, help="image size; the latent is size / 8")
    args = parser.parse_args()
    print("building the SD 1.5 architecture...", flush=True)
    unet = pipeline_from_config("sd15").unet
    latent = args.size // 8
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, latent, latent, generator=generator)
    context = torch.randn(2, 77, 768, generator=generator)
    rows = []
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():
        plain = unet(sample, 500, context).sample
        for label, path in cases(Path(folder)).items():
            network = hypernet.load(path)
            outputs = {}
            for fold in (True, False):
                with attention.activate(unet, [(network, 1.0)], fold=fold):
                    outputs[fold] = unet(sample, 500, context).sample
            rows.append(f"| {label} | {(outputs[True] - outputs[False]).abs().max().item():.2e} | "
                        f"{(outputs[False] - plain).abs().max().item():.3f} |")
            print(rows[-1], flush=True)
    print(f"\nMachine: {machine()}; SD 1.5 architecture (random weights), {args.size}×{args.size}, fp32, batch 2, t = 500\n")
    print("| file | max abs difference, folded vs MLPs (UNet output) | max abs change the network makes |")
    print("|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
