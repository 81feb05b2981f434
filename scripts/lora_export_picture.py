"""The README's side-by-side picture of `hypernet export-lora`: on the embedded toy model,
the same prompts and seeds with no network, with `<hypernet:water:1>`, and with the LoRA
exported from it (full rank, and rank 16), each LoRA used through its `<lora:…:1>` tag.

    python scripts/lora_export_picture.py [--out docs/images/lora-export.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from hypernet.grid import labelled_grid
from hypernet.loading import PACKAGED_LIBRARY, open_library
from hypernet.formats import load
from hypernet.generation import Generator, ModelInfo, Request
from hypernet.lora_export import export_lora
from hypernet.toy import model

PROMPTS = ("a red circle on a blue background", "a green triangle on a white background",
           "a yellow square on a black background", "a purple cross on a gray background")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/images/lora-export.png")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pipe = model.load_toy_pipeline()
    water = load(PACKAGED_LIBRARY / "water.pt")
    loras = Path(tempfile.mkdtemp(prefix="lora-picture-"))
    export_lora(pipe, water, loras / "water-lora.safetensors")
    export_lora(pipe, water, loras / "water-lora-r16.safetensors", rank=16)
    rows = [("no network", ""), ("<hypernet:water:1>", "<hypernet:water:1>"),
            ("<lora:water-lora:1>\n(full rank)", "<lora:water-lora:1>"),
            ("<lora:water-lora-r16:1>\n(rank 16)", "<lora:water-lora-r16:1>")]
    with Generator(pipe, library=open_library(loras / "hypernetworks"), model=ModelInfo("hypernet-toy"), lora_dir=loras) as generator:
        images = [[generator.generate(Request(prompt=f"{prompt} {tag}".strip(), steps=args.steps, seed=seed),
                                      progress=False)[0].image for seed, prompt in enumerate(PROMPTS)]
                  for _, tag in rows]
    picture = labelled_grid(images, [label for label, _ in rows], list(PROMPTS),
                            title="hypernet export-lora water: the LoRA draws what the hypernetwork draws")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
