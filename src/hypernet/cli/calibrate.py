"""`hypernet calibrate NAME`: fit a calibration curve so that NAME's multiplier means what
it says (0.5 = about half-way to the full effect) and store it in the file's metadata.
The webui ignores the curve and applies the raw multiplier. `--remove` deletes it.

Pictures of the same prompts and seeds are generated at internal multipliers 0, 0.1,
..., 1; their pixel-space progress towards the full effect is inverted into the curve
(`hypernet.calibration`). Only the metadata key changes: the weights keep their bytes.
A network shipped inside the package is written to --hypernet-dir instead."""

from __future__ import annotations

from pathlib import Path

from ..errors import HypernetError
from .generate import DEFAULT_LIBRARY, size
from .options import number_list

TOY_CFG, TOY_SAMPLER = 5.0, "DDIM"  # how the toy model's judge generates when it measures styles
DEFAULT_CFG = 7.0


def register(sub) -> None:
    parser = sub.add_parser("calibrate", help="make a hypernetwork's multiplier a dial: fit and store a calibration curve",
                            description=__doc__)
    parser.add_argument("name", help="hypernetwork name in --hypernet-dir, or a .pt/.safetensors file")
    parser.add_argument("--model", default=None, help="checkpoint or diffusers folder (default: the embedded toy model)")
    parser.add_argument("--model-family", default=None, choices=["sd15", "sd2", "sd2-v", "sdxl", "sdxl-v"],
                        help="override the detected model family")
    parser.add_argument("--hypernet-dir", default=DEFAULT_LIBRARY, help=f"hypernetwork library folder (default {DEFAULT_LIBRARY})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--prompt", action="append", default=None, metavar="P",
                        help="a prompt to measure on (repeatable; default: a handful, or the toy world's on the toy model)")
    parser.add_argument("--prompts", type=int, default=8, metavar="N", help="how many default prompts (default 8)")
    parser.add_argument("--seeds", type=int, default=2, metavar="N", help="seeds per prompt: 0 .. N-1 (default 2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=None, help=f"CFG scale (default {DEFAULT_CFG:g}; {TOY_CFG:g} on the toy model)")
    parser.add_argument("--sampler", default=None, help=f"webui sampler name (default: the generator's; {TOY_SAMPLER} on the toy model)")
    parser.add_argument("--size", type=size, default=None, help="WIDTHxHEIGHT (default: the model's native size)")
    parser.add_argument("--grid", type=number_list, default=None, metavar="M,M,...",
                        help="internal multipliers measured, from 0 to 1 (default 0,0.1,...,1)")
    parser.add_argument("--proxy", choices=["features", "pixels"], default="features",
                        help="what progress is measured on: colour and texture statistics (default), or the pixels")
    parser.add_argument("--remove", action="store_true", help="delete the file's curve (no generation)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=run)


def _prompts(args) -> list[str]:
    from ..calibration import DEFAULT_PROMPTS

    if args.prompt:
        prompts = [p.strip() for p in args.prompt if p.strip()]
        if not prompts:
            raise HypernetError("--prompt is empty; give a prompt to measure on")
        return prompts
    if args.prompts < 1:
        raise HypernetError(f"--prompts {args.prompts} must be at least 1")
    if args.model is None:
        from ..toy.evaluate import style_prompts

        return [prompt for prompt, _ in style_prompts(args.prompts, seed=1)]  # not the judge's set (seed 0)
    return list(DEFAULT_PROMPTS[:args.prompts])


def run(args) -> int:
    from ..calibration import GRID, calibrate_network
    from ..formats import load, write_calibration
    from ..generation import Generator
    from ..loading import load_pipeline_for
    from .defaults import toy_model_loader
    from .train import resolve_network

    source, output = resolve_network(args.name, args.hypernet_dir)
    network = load(source)  # a damaged file fails here, before any model is loaded
    if args.remove:
        if network.metadata.multiplier_calibration is None and source == output:
            print(f"{source}: has no calibration curve")
            return 0
        write_calibration(source, None, output)
        print(f"removed the calibration curve: {output}")
        return 0
    if args.seeds < 1 or args.steps < 1:
        raise HypernetError(f"--seeds {args.seeds} and --steps {args.steps} must be at least 1")
    if args.size is not None and (min(args.size) < 8 or any(value % 8 for value in args.size)):
        raise HypernetError(f"--size {args.size[0]}x{args.size[1]}: width and height must be multiples of 8")
    grid = sorted(args.grid) if args.grid else list(GRID)
    if grid[0] != 0 or grid[-1] != 1:
        raise HypernetError(f"--grid must start at 0 and end at 1, not {','.join(f'{m:g}' for m in grid)}")
    prompts = _prompts(args)
    cfg = args.cfg if args.cfg is not None else (TOY_CFG if args.model is None else DEFAULT_CFG)
    sampler = args.sampler or (TOY_SAMPLER if args.model is None else None)
    pipe = load_pipeline_for(args.model, family=args.model_family, device=args.device, progress=not args.quiet,
                             default_model=toy_model_loader())
    with Generator(pipe) as generator:
        calibration = calibrate_network(generator, network, prompts, seeds=args.seeds, steps=args.steps, cfg=cfg,
                                        size=args.size, progress=not args.quiet, grid=grid, sampler=sampler,
                                        proxy=args.proxy)
    written = write_calibration(source, calibration.curve, output)
    print(calibration.table())
    print(f"wrote the calibration curve ({len(calibration.curve)} points) to {written}")
    return 0
