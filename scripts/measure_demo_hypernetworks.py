"""Judges the shipped demo hypernetworks on the embedded model (the numbers in
docs/training.md): style progress per multiplier, monotonicity, multiplier 0 against the
base, and the shape and colour the judge still finds at multiplier 1 (multipliers go
through the file's calibration curve unless --uncalibrated). Also writes one
grid per style (rows: base, then each multiplier) to OUT (default outputs/demo-styles)."""

import argparse
import sys
from pathlib import Path

import torch

from hypernet import formats
from hypernet.loading import PACKAGED_LIBRARY
from hypernet.toy import evaluate, judge, model, world


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("styles", nargs="*", default=list(world.STYLES))
    parser.add_argument("--library", default=str(PACKAGED_LIBRARY))
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--out", default="outputs/demo-styles")
    parser.add_argument("--model", help="a toy-model folder (default: the embedded model)")
    parser.add_argument("--uncalibrated", action="store_true", help="judge the raw multipliers (ignore a calibration curve)")
    args = parser.parse_args(argv)
    pipeline, toy_judge = model.load_toy_pipeline(folder=args.model), judge.load_judge()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| network | base score | set score | progress at 0 / 0.25 / 0.5 / 0.75 / 1 | monotone | m=0 identical | shape+colour found at m=1 |")
    print("|---|---|---|---|---|---|---|")
    for style in args.styles:
        network = formats.load(Path(args.library) / f"{style}.pt")
        if args.uncalibrated:
            network.metadata.multiplier_calibration = None
        result = evaluate.style_measurements(pipeline, toy_judge, network, style, count=args.count)
        progress = " / ".join(f"{result['progress'][m]:.2f}" for m in evaluate.STYLE_MULTIPLIERS)
        print(f"| {style} | {result['base_score']:.3f} | {result['set_score']:.3f} | {progress} | {result['monotone']} | "
              f"{result['zero_is_identical']} | {result['content_at_strongest']:.2f} |")
        rows = [result["base_pictures"]] + [result["pictures"][m] for m in evaluate.STYLE_MULTIPLIERS]
        evaluate.grid(evaluate.to_pil(torch.cat([r[:10] for r in rows])), columns=10).save(out / f"{style}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
