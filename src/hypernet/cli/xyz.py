"""`hypernet xyz`: the webui's X/Y/Z plot. Every combination of up to three axes
(TYPE:VALUES) as one labelled PNG, each cell also written as its own PNG with infotext.

Axis types: hypernet (names, none), multiplier, sampler, steps, cfg, seed, prompt (Prompt
S/R: the first value is searched for, each value replaces it), checkpoint (paths,
default), size (WxH), clip skip. Values are comma-separated; quote a value holding a
comma ("a, b"); numbers take ranges: 1-5, 1-10 (+3), 10-0 (-2), 0-1 [5].
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import HypernetError
from .generate import add_model_arguments, add_sampling_arguments


def axis(text: str):
    from ..xyz import parse_axis

    try:
        return parse_axis(text)
    except HypernetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(sub) -> None:
    parser = sub.add_parser("xyz", help="X/Y/Z plot: a grid over up to three axes of settings",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", help="prompt (<hypernet:...> tags allowed; a hypernet axis adds or replaces its tag)")
    parser.add_argument("--x", type=axis, default=None, metavar="TYPE:VALUES", help='columns, e.g. "hypernet:water,neon"')
    parser.add_argument("--y", type=axis, default=None, metavar="TYPE:VALUES", help='rows, e.g. "multiplier:0,0.5,1"')
    parser.add_argument("--z", type=axis, default=None, metavar="TYPE:VALUES",
                        help='one grid per value, side by side, e.g. "sampler:Euler a,DDIM"')
    parser.add_argument("--seed", type=int, default=-1, help="seed of every cell (default -1: one random seed for all)")
    parser.add_argument("--output", default=None, help="grid PNG path (default OUT/xyz-NNNNN.png, numbered)")
    add_sampling_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def _grid_path(folder: Path) -> Path:
    taken = [int(p.stem[4:]) for p in folder.glob("xyz-[0-9][0-9][0-9][0-9][0-9].png")]
    return folder / f"xyz-{max(taken, default=-1) + 1:05d}.png"


def run(args) -> int:
    from ..fileio import make_folder
    from ..generation import Request
    from ..infotext import write_png
    from ..loading import load_generator, open_library
    from ..outputs import ImageWriter
    from ..xyz import ProgressLine, xyz_plot
    from .defaults import toy_model_loader

    width, height = args.size or (None, None)
    base = Request(prompt=args.prompt, negative_prompt=args.negative, steps=args.steps, cfg_scale=args.cfg,
                   seed=args.seed, width=width, height=height, sampler=args.sampler, schedule=args.schedule)
    axes = [args.x, args.y, args.z]
    writer = ImageWriter(args.out)  # folders that cannot be made fail before any model loads
    output = Path(args.output) if args.output else _grid_path(writer.folder)
    make_folder(output.parent, for_file=output)
    total = 1
    for each in axes:
        total *= len(each.values) if each else 1

    def generator_for(model):
        return load_generator(model if model is not None else args.model, hypernet_dir=args.hypernet_dir,
                              family=args.model_family, device=args.device, progress=not args.quiet,
                              lora_dir=args.lora_dir, embeddings_dir=args.embeddings_dir,
                              default_model=toy_model_loader(), fold=args.fold, memory_limit=args.max_memory)

    def on_cell(cell) -> None:  # each cell is on disk as soon as it is made
        print(f"{writer.write(cell.result)}  {' | '.join(cell.labels)}", flush=True)

    result = xyz_plot(generator_for, base, *axes, library=open_library(args.hypernet_dir), progress=not args.quiet,
                      on_cell=on_cell, on_done=None if args.quiet else ProgressLine(total))
    write_png(result.image, output, result.infotext)
    columns, rows, planes = (len(labels) for labels in result.labels)
    print(f"{output}  ({columns} x {rows} x {planes} cells)")
    return 0

