"""Calibrates the shipped demo hypernetworks (copies in memory, the package's files are not
touched) and judges them on the embedded model before and after (the numbers in
docs/generation.md, "Calibrated multipliers"): style progress at 0 / 0.25 / 0.5 / 0.75 / 1
by `hypernet.toy.evaluate.style_measurements` (20 prompts, 20 DDIM steps, guidance 5).

Variants of the fit (all judge-free: a projection onto the full network's change):
  generator         what `hypernet calibrate` does on the toy model: the project's
                    Generator, DDIM, CFG 5, 8 toy-world prompts (not the judge's:
                    style_prompts seed 1) x 2 seeds, the texture-statistics proxy
  generator-pixels  the same with `--proxy pixels`
  pipeline          the toy pipeline as the judge runs it (DDIM, guidance 5), 16 other
                    prompts and seeds, the texture-statistics proxy
  pipeline-pixels   the same pictures, the pixel proxy
"""

import argparse
import json
import sys
import time
from pathlib import Path

from hypernet import attention, formats
from hypernet.calibration import calibrate_network, fit_calibration, uncalibrated
from hypernet.generation import Generator
from hypernet.loading import PACKAGED_LIBRARY
from hypernet.toy import evaluate, judge, model, world


def judged(pipeline, toy_judge, network, style, count):
    result = evaluate.style_measurements(pipeline, toy_judge, network, style, count=count)
    return {m: round(result["progress"][m], 3) for m in evaluate.STYLE_MULTIPLIERS}, result["zero_is_identical"]


def fit(variant, pipeline, network, prompts, seeds):
    proxy = "pixels" if variant.endswith("-pixels") else "features"
    if variant.startswith("generator"):
        with Generator(pipeline) as generator:
            return calibrate_network(generator, network, prompts, seeds=seeds, steps=20, cfg=5.0, progress=False,
                                     proxy=proxy, sampler="DDIM")
    pairs = evaluate.style_prompts(len(prompts) * seeds, seed=1)
    texts, seed_list = [p for p, _ in pairs], [555 + i for i in range(len(pairs))]

    def measure(multiplier):
        with attention.activate(pipeline.unet, [(network, multiplier)]):
            pictures = evaluate.generate(pipeline, texts, seed_list, evaluate.DEFAULT_STEPS, evaluate.DEFAULT_GUIDANCE_SCALE)
        return ((pictures + 1) / 2).permute(0, 2, 3, 1)  # (N, H, W, 3) in [0, 1], as calibrate_network measures

    with uncalibrated(network):
        calibration = fit_calibration(measure, proxy=proxy)
        network.metadata.multiplier_calibration = calibration.curve
    return calibration


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("styles", nargs="*", default=list(world.STYLES))
    parser.add_argument("--variants", default="generator,pipeline,pipeline-pixels")
    parser.add_argument("--count", type=int, default=20, help="pictures the judge measures")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--no-before", dest="before", action="store_false", help="skip judging the uncalibrated network")
    args = parser.parse_args(argv)
    pipeline, toy_judge = model.load_toy_pipeline(), judge.load_judge()
    for style in args.styles:
        network = formats.load(PACKAGED_LIBRARY / f"{style}.pt")
        if args.before:
            before, identical = judged(pipeline, toy_judge, network, style, args.count)
            print(json.dumps({"style": style, "variant": "none", "judged": before, "zero_identical": identical}), flush=True)
        prompts = [p for p, _ in evaluate.style_prompts(args.prompts, seed=1)]
        for variant in args.variants.split(","):
            started = time.monotonic()
            network.metadata.multiplier_calibration = None
            calibration = fit(variant, pipeline, network, prompts, args.seeds)
            seconds = round(time.monotonic() - started)
            after, identical = judged(pipeline, toy_judge, network, style, args.count)
            print(json.dumps({"style": style, "variant": variant, "fit_seconds": seconds,
                              "proxy_before": {m: round(p, 3) for m, p in calibration.measured.items()},
                              "proxy_after": {u: round(p, 3) for u, p in calibration.after.items()},
                              "curve_at": {u: round(i, 3) for u, i in calibration.curve if u in (0.25, 0.5, 0.75)},
                              "judged": after, "zero_identical": identical}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
