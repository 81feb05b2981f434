"""Exported LoRAs against the hypernetworks they come from, on the embedded toy model: the
tables in docs/formats.md and docs/benchmarks.md.

Each LoRA is written by `export_lora` into a LoRA folder and used through its prompt tag,
`<lora:NAME:1>`, as any LoRA is (diffusers/peft adapters); its pictures are compared with
those of `<hypernet:NAME:1>`, same prompt and seed: PSNR over all pictures (from their
pooled mean squared error), the worst picture's PSNR, and the largest difference of one
pixel channel (0-255).

Networks: `water` (shipped, linear: exact export, then truncated), and two non-linear
ones made here (fitted exports): `ripple`, relu + layer norm, distilled from water (its
modules trained to reproduce water's changes on real activations: a network that does a
real job with real non-linearities), and `wild`, relu + layer norm with random weights
(nothing linear to find: the worst case).

    python benchmarks/lora_export.py [--count 20] [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from hypernet import formats  # noqa: E402
from hypernet.cli.defaults import toy_prompts  # noqa: E402
from hypernet.generation import Generator, ModelInfo, Request  # noqa: E402
from hypernet.loading import PACKAGED_LIBRARY, open_library  # noqa: E402
from hypernet.lora_export import export_lora  # noqa: E402
from hypernet.network import Hypernetwork  # noqa: E402
from hypernet.toy import evaluate, model  # noqa: E402


def psnr_of(mean_squared_error: float) -> float:
    return float("inf") if mean_squared_error == 0 else 10 * np.log10(255.0**2 / mean_squared_error)


def compare(reference: list[np.ndarray], pictures: list[np.ndarray]) -> dict:
    errors = [float(((a.astype(np.float64) - b) ** 2).mean()) for a, b in zip(reference, pictures)]
    return {"psnr": psnr_of(float(np.mean(errors))), "worst": psnr_of(max(errors)),
            "max": int(max(np.abs(a.astype(int) - b).max() for a, b in zip(reference, pictures)))}


def attention_inputs(pipe, network, prompts, rows_per_call: int = 256) -> dict[int, torch.Tensor]:
    """{width: rows} of inputs to to_k/to_v seen while generating `prompts` with `network`."""
    found: dict[int, list] = {}
    generator_rows = torch.Generator().manual_seed(0)

    def record(module, args, kwargs):
        x = kwargs.get("encoder_hidden_states")
        x = (args[0] if args else kwargs["hidden_states"]) if x is None else x
        rows = x.detach().reshape(-1, x.shape[-1])
        pick = torch.randperm(rows.shape[0], generator=generator_rows)[:rows_per_call]
        found.setdefault(rows.shape[-1], []).append(rows[pick].float())

    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for m in pipe.unet.modules()
               if hasattr(m, "to_k") and hasattr(m, "processor")]
    try:
        with Generator(pipe) as generator:
            for seed, prompt in enumerate(prompts):
                generator.generate(Request(prompt=prompt, steps=10, seed=seed), networks=[(network, 1.0)], progress=False)
    finally:
        for handle in handles:
            handle.remove()
    return {width: torch.cat(rows) for width, rows in found.items()}


def distilled(teacher: Hypernetwork, inputs: dict[int, torch.Tensor], steps: int = 600) -> Hypernetwork:
    """A relu + layer-norm network trained to make `teacher`'s changes on `inputs`."""
    student = Hypernetwork.create(sizes=teacher.sizes, activation="relu", layer_norm=True, name="ripple", generator_seed=0)
    with torch.no_grad():  # the webui's LayerNorm init (N(0, 0.01)) starts the output near 0; let it learn a scale
        for module in student.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(0.1)
    student.train()
    optimiser = torch.optim.Adam(student.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = 0.0
        for width, rows in inputs.items():
            batch = rows[torch.randint(rows.shape[0], (512,), generator=generator)]
            for ours, theirs in zip(student.pair(width), teacher.pair(width)):
                with torch.no_grad():
                    target = theirs(batch, 1.0) - batch
                loss = loss + ((ours(batch) - batch - target) ** 2).mean() / target.pow(2).mean()
        loss.backward()
        optimiser.step()
    return student.eval()


def wild() -> Hypernetwork:
    network = Hypernetwork.create(sizes=[80, 32, 64], activation="relu", layer_norm=True, weight_init="XavierNormal",
                                  name="wild", generator_seed=1)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(0.3 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return network


def sd15_sizes(ranks=(4, 8, 16, 32, 64, 128), folder: Path | None = None) -> None:
    """File sizes of a webui-default network's LoRA (sizes 768/320/640/1280: every attention
    layer) on the SD 1.5 architecture, per rank: written with zero factors of the real
    shapes on a UNet built on the meta device (the size depends on the shapes only)."""
    from hypernet.lora_export.files import lora_tensors, write_lora
    from hypernet.lora_export.targets import find_targets
    from hypernet.models.assembly import _build_modules
    from hypernet.models.configs import family_config

    unet = _build_modules(family_config("sd15"), empty=True)["unet"]
    targets = find_targets(unet, {768, 320, 640, 1280})
    folder = folder or Path(tempfile.mkdtemp(prefix="lora-sizes-"))
    network_bytes = Hypernetwork.create(sizes=[768, 320, 640, 1280]).parameter_count() * 4
    print(f"\nSD 1.5, webui-default network (768/320/640/1280, 1-2-1: {network_bytes / 2**20:.1f} MiB in float32): "
          f"{len(targets)} attention layers, {2 * len(targets)} LoRA modules\n")
    print("| rank | float32 (MiB) | float16 (MiB) |")
    print("|---|---|---|")
    for rank in (*ranks, "full"):
        sizes = []
        for dtype in (torch.float32, torch.float16):
            factors = {}
            for target in targets:
                for side in ("to_k", "to_v"):
                    out_features = getattr(target.attention, side).out_features
                    kept = min(out_features, target.width) if rank == "full" else rank
                    factors[f"{target.name}.{side}"] = (torch.zeros(out_features, kept), torch.zeros(kept, target.width))
            sizes.append(write_lora(folder / "sizes.safetensors", lora_tensors("kohya", factors, dtype), {}) / 2**20)
        print(f"| {rank} | {sizes[0]:.1f} | {sizes[1]:.1f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20, help="prompts (seeds 0 … count-1)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fit-prompts", type=int, default=40, help="prompts the non-linear fits see (default 40)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes-only", action="store_true", help="only the SD 1.5 file-size table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.sizes_only:
        sd15_sizes()
        return 0
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lora-export-"))
    library, loras = work / "hypernetworks", work / "Lora"
    pipe = model.load_toy_pipeline()
    water = formats.load(PACKAGED_LIBRARY / "water.pt")
    prompts = [prompt for prompt, _ in evaluate.style_prompts(args.count)]
    inputs = attention_inputs(pipe, water, [p for p in toy_prompts(10, seed=1)])
    formats.save(distilled(water, inputs), library / "ripple.pt")
    formats.save(wild(), library / "wild.pt")
    generator = Generator(pipe, library=open_library(library), model=ModelInfo("hypernet-toy"), lora_dir=loras)

    def pictures(tag: str) -> list[np.ndarray]:
        return [np.asarray(generator.generate(Request(prompt=f"{prompt} {tag}".strip(), steps=args.steps, seed=seed),
                                              progress=False)[0].image) for seed, prompt in enumerate(prompts)]

    rows = []
    plans = [("water", "full rank", {}), ("water", "full rank, value offset dropped", {"fold_value_bias": False}),
             ("water", "full rank, float16", {"dtype": "float16"}), ("water", "rank 32", {"rank": 32}),
             ("water", "rank 16", {"rank": 16}), ("water", "rank 8", {"rank": 8}), ("water", "rank 4", {"rank": 4}),
             ("water", "error ≤ 0.01", {"error": 0.01}),
             ("water", "fit (--fit), rank 16", {"rank": 16, "fit": True}),
             ("water", "fit (--fit), rank 8", {"rank": 8, "fit": True}),
             ("ripple", "fit, full rank", {}), ("ripple", "fit, rank 16", {"rank": 16}), ("ripple", "fit, rank 8", {"rank": 8}),
             ("wild", "fit, full rank", {}), ("wild", "fit, rank 8", {"rank": 8})]
    references, base = {}, None
    fit_prompts = toy_prompts(args.fit_prompts)
    for index, (name, label, options) in enumerate(plans):
        network = generator.library.load(name)
        if name not in references:
            references[name] = pictures(f"<hypernet:{name}:1>")
            base = base or pictures("")
            rows.append((name, "no network (the base model)", None, compare(references[name], base), None, None))
        path = loras / f"{name}-{index}.safetensors"
        begun = time.perf_counter()
        report = export_lora(pipe, network, path, prompts=fit_prompts, base_model=generator.model, **options)
        seconds = time.perf_counter() - begun
        measured = compare(references[name], pictures(f"<lora:{path.stem}:1>"))
        mean_error = sum(layer.error for layer in report.layers) / len(report.layers)
        rows.append((name, label, report.bytes_on_disk, measured, mean_error, seconds))
        print(f"{name} {label}: {measured}", file=sys.stderr, flush=True)
    generator.close()

    print(f"Machine: {machine()}; {args.threads} torch thread(s). {len(prompts)} prompts (seeds 0-{len(prompts) - 1}), "
          f"{args.steps} steps, the generator's default sampler and CFG; fits on {len(fit_prompts)} prompts. "
          f"Whole run {time.perf_counter() - started:.0f} s.\n")
    print("| network | LoRA | file (KiB) | PSNR vs hypernetwork (dB) | worst picture (dB) | max pixel diff | mean layer error (export's report) | export (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, size, measured, mean_error, seconds in rows:
        size_text = f"{size / 1024:.0f}" if size is not None else "–"
        error_text = f"{mean_error:.3g}" if mean_error is not None else "–"
        seconds_text = f"{seconds:.1f}" if seconds is not None else "–"
        print(f"| {name} | {label} | {size_text} | {measured['psnr']:.1f} | {measured['worst']:.1f} | {measured['max']} | "
              f"{error_text} | {seconds_text} |")
    sd15_sizes()
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
