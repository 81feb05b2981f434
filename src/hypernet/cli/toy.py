"""`hypernet toy`: the embedded toy model: train it, judge pictures, draw style sets,
export it as one webui-layout file."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import HypernetError


def register(sub) -> None:
    parser = sub.add_parser("toy", help="the embedded toy model (train, score, style sets, export)", description=__doc__)
    toy = parser.add_subparsers(dest="toy_command", metavar="TOY_COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    train_base = toy.add_parser("train-base", help="train the toy model from scratch (under an hour on 2 CPU cores)")
    train_base.add_argument("--quick", action="store_true", help="tiny step counts: proves the code path in seconds")
    train_base.add_argument("--out", default="toy-model", help="folder to write (diffusers layout); default %(default)s")
    train_base.add_argument("--judge", help="judge weights for the progress evaluations (default: the shipped judge)")
    train_base.add_argument("--seed", type=int, default=0)
    train_base.add_argument("--vae-from", metavar="DIR", help="reuse the VAE of this toy-model folder and skip its training")
    train_base.add_argument(
        "--continue-from", metavar="DIR", help="start from this toy-model folder's weights (VAE kept) for a further stage"
    )
    train_base.add_argument("--unet-minutes", type=float, help="time budget of the UNet stage (default: the plan's)")
    train_base.add_argument("--learning-rate", type=float, help="peak UNet/text learning rate (default: the plan's)")
    train_base.add_argument("--no-progress", action="store_true", help="no progress bars")
    train_base.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default %(default)s: fastest when other processes share the cores)"
    )
    train_base.set_defaults(func=run_train_base)

    train_judge = toy.add_parser("train-judge", help="train the judge (shape, colour, background classifier)")
    train_judge.add_argument("--out", default="toy-model", help="folder to write judge.safetensors into; default %(default)s")
    train_judge.add_argument("--steps", type=int, default=1000)
    train_judge.add_argument("--seed", type=int, default=0)
    train_judge.add_argument("--no-progress", action="store_true")
    train_judge.set_defaults(func=run_train_judge)

    score = toy.add_parser("score", help="judge pictures: shape, colour, background and style scores")
    score.add_argument("images", nargs="+", metavar="IMAGE")
    score.add_argument("--judge", help="judge weights (default: the shipped judge)")
    score.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    score.set_defaults(func=run_score)

    style_set = toy.add_parser("style-set", help="write a captioned training set of one style (NNN.png + NNN.txt)")
    style_set.add_argument("style", help="water, neon or plain")
    style_set.add_argument("out", help="folder to write")
    style_set.add_argument("--count", type=int, default=40)
    style_set.add_argument("--seed", type=int, default=0)
    style_set.set_defaults(func=run_style_set)

    sample = toy.add_parser("sample", help="generate one picture with the toy model")
    sample.add_argument("prompt")
    sample.add_argument("--out", default="toy.png")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--steps", type=int, default=20)
    sample.add_argument("--guidance-scale", type=float, default=None)
    sample.add_argument("--scheduler", default="ddim", help="ddim, euler, euler_a, pndm, dpmsolver, ddpm")
    sample.add_argument("--model", help="a toy-model folder (default: the shipped one)")
    sample.set_defaults(func=run_sample)

    export = toy.add_parser("export", help="write the toy model as one checkpoint file")
    export.add_argument("--single-file", required=True, metavar="OUT", help="output .safetensors in the webui/CompVis key layout")
    export.add_argument("--model", help="a toy-model folder (default: the shipped one)")
    export.set_defaults(func=run_export)


def run_train_base(args) -> int:
    import torch

    from ..toy import judge as judge_module
    from ..toy import train

    torch.set_num_threads(max(1, args.threads))
    overrides = {"seed": args.seed}
    if args.unet_minutes is not None:
        overrides["unet_minutes"] = args.unet_minutes
    if args.learning_rate is not None:
        overrides["unet_learning_rate"] = args.learning_rate
    plan = train.training_plan("quick" if args.quick else "full", **overrides)
    judge = None
    try:
        judge = judge_module.load_judge(args.judge)
    except HypernetError as error:
        if args.judge:
            raise
        print(f"no judge ({error}); training without progress evaluations")
    summary = train.train_base(args.out, plan, judge=judge, progress=not args.no_progress, vae_from=args.vae_from,
                               continue_from=args.continue_from)
    last = summary["evaluations"][-1] if summary["evaluations"] else {}
    print(json.dumps({"wall_minutes": summary["wall_minutes"], "scaling_factor": summary["scaling_factor"], "last_evaluation": last}, indent=2))
    return 0


def run_train_judge(args) -> int:
    from ..toy import judge

    summary = judge.timed_train_judge(args.out, steps=args.steps, seed=args.seed, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def run_score(args) -> int:
    from ..toy import judge as judge_module

    for path in args.images:
        if not Path(path).is_file():
            raise HypernetError(f"{path}: no such image file")
    judge = judge_module.load_judge(args.judge)
    predictions = judge_module.judge_images(judge, args.images)
    if args.json:
        for path, prediction in zip(args.images, predictions):
            print(json.dumps({"image": path, **prediction.__dict__}))
        return 0
    print(f"{'image':<32} {'shape':<9} {'colour':<7} {'background':<10} {'water':>6} {'neon':>6}")
    for path, prediction in zip(args.images, predictions):
        print(
            f"{path:<32} {prediction.shape:<9} {prediction.colour:<7} {prediction.background:<10} "
            f"{prediction.water:>6.3f} {prediction.neon:>6.3f}"
        )
    return 0


def run_style_set(args) -> int:
    from ..toy import world

    paths = world.write_style_set(args.out, args.style, count=args.count, seed=args.seed)
    print(f"wrote {len(paths)} captioned {args.style} pictures to {args.out}")
    return 0


def run_sample(args) -> int:
    from ..toy import evaluate, model

    pipeline = model.load_toy_pipeline(scheduler=args.scheduler, folder=args.model)
    guidance = evaluate.DEFAULT_GUIDANCE_SCALE if args.guidance_scale is None else args.guidance_scale
    pictures = evaluate.generate(pipeline, [args.prompt], [args.seed], steps=args.steps, guidance_scale=guidance)
    evaluate.to_pil(pictures)[0].save(args.out)
    print(f"wrote {args.out}")
    return 0


def run_export(args) -> int:
    from ..toy import model

    path = model.export_toy_single_file(args.single_file, folder=args.model)
    print(f"wrote {path}")
    return 0
