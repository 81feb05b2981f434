"""`hypernet grid`: one labelled PNG of a hypernetwork at several strengths."""

from __future__ import annotations

from pathlib import Path

from ..errors import HypernetError
from .generate import add_model_arguments, add_sampling_arguments
from .options import integer_list, number_list


def register(sub) -> None:
    parser = sub.add_parser("grid", help="strength grid: a hypernetwork at several multipliers", description=__doc__)
    parser.add_argument("prompt", nargs="?", default=None, help="prompt (a tag for --hypernet in it is replaced per column)")
    parser.add_argument("--hypernet", required=True, metavar="NAME", help="hypernetwork name in the library")
    parser.add_argument("--multipliers", type=number_list, default=[0, 0.25, 0.5, 0.75, 1.0], help="columns (default 0,0.25,0.5,0.75,1)")
    parser.add_argument("--seeds", type=integer_list, default=None, help="rows, e.g. 1,2,3 (default: --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompts-file", default=None, help="one prompt per line; each gives rows")
    parser.add_argument("--output", default=None, help="grid PNG path (default OUT/grid-NAME.png)")
    add_sampling_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..fileio import make_folder
    from ..generation import Request
    from ..infotext import write_png
    from ..loading import load_generator
    from .defaults import toy_model_loader
    from ..strength import strength_grid

    prompts = []
    if args.prompts_file:
        try:
            prompts = [line.strip() for line in Path(args.prompts_file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as error:
            raise HypernetError(f"{args.prompts_file}: cannot read prompts file ({error.strerror})") from None
        if not prompts:
            raise HypernetError(f"{args.prompts_file}: holds no prompt lines")
    if args.prompt is None and not prompts:
        raise HypernetError("give a PROMPT or --prompts-file")
    width, height = args.size or (None, None)
    base = Request(prompt=args.prompt or prompts[0], negative_prompt=args.negative, steps=args.steps, cfg_scale=args.cfg,
                   seed=args.seed, width=width, height=height, sampler=args.sampler, schedule=args.schedule)
    output = Path(args.output) if args.output else Path(args.out) / f"grid-{args.hypernet.replace('/', '_')}.png"
    make_folder(output.parent, for_file=output)  # fails before the model loads, not after the grid is made
    generator = load_generator(args.model, hypernet_dir=args.hypernet_dir, family=args.model_family, device=args.device,
                               progress=not args.quiet, lora_dir=args.lora_dir, embeddings_dir=args.embeddings_dir,
                               default_model=toy_model_loader(), fold=args.fold, memory_limit=args.max_memory)
    image, rows = strength_grid(generator, base, args.hypernet, args.multipliers, args.seeds or [args.seed], prompts,
                                progress=not args.quiet)
    write_png(image, output, rows[0][0].infotext)
    print(f"{output}  ({len(rows)} rows x {len(args.multipliers)} columns)")
    return 0
