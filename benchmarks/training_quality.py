"""How fast a hypernetwork learns a style on the embedded toy model, recipe against recipe.

    python benchmarks/training_quality.py run --style water --recipe H --seed 0 --steps 1500 --every 100 --out outputs/quality
    python benchmarks/training_quality.py report outputs/quality      # the table and the plot

`run` trains one network on 40 pictures of a style set (`hypernet toy style-set STYLE`,
seed 0) with a recipe, saves a checkpoint every `--every` steps, and judges each one:
20 fixed prompts and seeds over every combination of the world, 20 DDIM steps, guidance
5, style progress at multiplier 1 (0 = the base model's pictures, 1 = the style set's;
`hypernet.toy.judge.style_progress`). The final network is also judged at 0 / 0.25 / 0.5 /
0.75 / 1 and for content kept (shape and colour the judge still finds at m = 1). One JSON
file per run goes to OUT.

Recipes:
  W  the webui's defaults: 1-2-1 linear network on every width, Normal init, learning
     rate 1e-5 constant, batch 1, no caption dropout, its `hypernetwork.txt` template;
  H  hypernet's defaults: what `hypernet train NAME --data DIR` does with no other flag
     (a new network made as the trainer makes one, every option at its default);
  `--set key=value` changes one option of a recipe (exploration: `--set learning_rate=3e-3`).

`report` reads the JSON files: per style and recipe, the images seen until progress first
reaches 0.8 at m = 1 (per seed), final progress, content kept, divergence; the ratio W/H;
and `progress.png`, progress against images seen for both recipes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

TARGET = 0.8
EVAL_COUNT = 20
DATA_COUNT = 40


def recipe(name: str, data: Path, overrides: list[str]):
    """(network options, TrainingConfig) of a recipe, with `key=value` overrides."""
    from hypernet.training.defaults import WEBUI_TEMPLATE, network_options, webui_config, webui_network_options
    from hypernet.training.config import TrainingConfig

    if name == "W":
        options, config = webui_network_options(), webui_config(data, template=WEBUI_TEMPLATE)
    elif name == "H":
        options, config = network_options(), TrainingConfig(data=data)
    else:
        raise SystemExit(f"unknown recipe {name!r}: W or H")
    changes = {}
    for item in overrides:
        key, _, value = item.partition("=")
        if key in ("weight_init", "activation"):
            options[key] = value
            continue
        current = getattr(config, key)
        changes[key] = type(current)(value) if current is not None and not isinstance(current, str) else value
    return options, config.replace(**changes)


class Scorer:
    """The fixed prompts and seeds, the base model's pictures and the style set's score."""

    def __init__(self, pipe, style: str):
        from hypernet.toy import evaluate, judge, world

        self.pipe, self.style = pipe, style
        pairs = evaluate.style_prompts(EVAL_COUNT, 0)
        self.pairs = pairs
        self.prompts = [prompt for prompt, _ in pairs]
        self.seeds = [7 + index for index in range(EVAL_COUNT)]
        self.base = evaluate.generate(pipe, self.prompts, self.seeds)
        self.base_score = float(judge.style_score(self.base, style).mean())
        set_pictures = [image for image, _, _ in world.sample(4242, EVAL_COUNT, style)]
        self.set_score = float(judge.style_score(set_pictures, style).mean())
        self.judge = judge.load_judge()

    def pictures(self, network, multiplier: float):
        from hypernet import attention
        from hypernet.toy import evaluate

        with attention.activate(self.pipe.unet, [(network, multiplier)]):
            return evaluate.generate(self.pipe, self.prompts, self.seeds)

    def progress(self, pictures) -> float:
        from hypernet.toy import judge

        return judge.style_progress(self.base_score, float(judge.style_score(pictures, self.style).mean()), self.set_score)

    def content(self, pictures) -> float:
        from hypernet.toy import judge

        found = judge.judge_images(self.judge, pictures)
        return sum(p.shape == s and p.colour == c for p, (_, (s, c, _)) in zip(found, self.pairs)) / len(found)


def run(args) -> int:
    from hypernet import formats
    from hypernet.network import Hypernetwork
    from hypernet.toy import model, world
    from hypernet.training import train

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data = out / "sets" / args.style
    if not data.is_dir():
        world.write_style_set(data, args.style, count=DATA_COUNT, seed=0)
    tag = args.tag or f"{args.style}-{args.recipe}-{args.seed}"
    options, config = recipe(args.recipe, data, args.set)
    steps = args.steps or config.max_steps
    run_dir = out / "runs" / tag
    config = config.replace(max_steps=steps, save_every=args.every, preview_every=0, run_dir=run_dir, seed=args.seed,
                            save_optimizer_state=False)
    pipe = model.load_toy_pipeline()
    started = time.perf_counter()
    if args.judge_only:  # a run cut short (killed): judge the checkpoints it saved, the last one as its result
        saved = sorted((run_dir / "hypernetworks").glob(f"{args.style}-*.pt"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        network = formats.load(saved[-1])
        result = argparse.Namespace(steps_done=network.step, stop_reason=f"cut at step {network.step}", recoveries=[])
        seconds = float("nan")
    else:
        sizes = [module.to_k.in_features for module in pipe.unet.modules() if hasattr(module, "to_k")]
        network = Hypernetwork.create(sizes=sorted(set(sizes), key=sizes.index), name=args.style,
                                      generator_seed=args.seed, **options)
        result = train(pipe, network, config, output=None, progress=False, log=lambda message: None)
        seconds = time.perf_counter() - started
    scorer = Scorer(pipe, args.style)
    images_per_step = config.batch_size * config.gradient_accumulation
    curve = []
    for path in sorted((run_dir / "hypernetworks").glob(f"{args.style}-*.pt"), key=lambda p: int(p.stem.rsplit("-", 1)[1])):
        step = int(path.stem.rsplit("-", 1)[1])
        curve.append([step, step * images_per_step, scorer.progress(scorer.pictures(formats.load(path), 1.0))])
        print(f"{tag}: step {step}: progress {curve[-1][2]:.3f}", flush=True)
    final = {m: scorer.progress(scorer.pictures(network, m)) for m in (0.25, 0.5, 0.75, 1.0)} if curve else {}
    content = scorer.content(scorer.pictures(network, 1.0))
    reached = next((images for _, images, value in curve if value >= TARGET), None)
    record = {
        "style": args.style, "recipe": args.recipe, "seed": args.seed, "set": args.set, "tag": tag,
        "batch": images_per_step, "steps": result.steps_done, "stop_reason": str(result.stop_reason),
        "recoveries": len(getattr(result, "recoveries", []) or []),
        "curve": curve, "images_to_target": reached, "final_progress": final, "content": content,
        "train_seconds": seconds, "machine": machine(), "options": options,
        "config": {k: v for k, v in config.to_json().items() if k not in ("preview", "data", "run_dir", "log_dir")},
    }
    (out / f"{tag}.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("tag", "images_to_target", "final_progress", "content", "stop_reason", "train_seconds")}))
    return 0


def diverged(record) -> bool:
    ended = record["stop_reason"] == "finished" or record["stop_reason"].startswith("cut at")
    return not ended or record["recoveries"] > 0 or record["content"] < 0.5


def report(args) -> int:
    out = Path(args.out)
    records = [json.loads(path.read_text()) for path in sorted(out.glob("*.json"))]
    records = [r for r in records if not r["set"]] if not args.all else records
    lines = ["| style | recipe | seed | images (steps) to 80 % at m = 1 | final progress at m = 0.25 / 0.5 / 0.75 / 1 | content kept | diverged | train time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in sorted(records, key=lambda r: (r["style"], r["recipe"], r["seed"])):
        by.setdefault((r["style"], r["recipe"]), []).append(r)
        budget = r["steps"] * r["batch"]
        reached = (f"{r['images_to_target']} ({r['images_to_target'] // r['batch']})" if r["images_to_target"] is not None
                   else f"not reached in {budget} ({r['steps']})")
        final = " / ".join(f"{r['final_progress'][k]:.2f}" for k in ("0.25", "0.5", "0.75", "1.0")) if r["final_progress"] else "-"
        lines.append(f"| {r['style']} | {r['recipe']} | {r['seed']} | {reached} | {final} | {r['content']:.2f} | "
                     f"{'yes' if diverged(r) else 'no'} | {r['train_seconds']:.0f} |".replace("| nan |", "| (cut) |"))
    lines += ["", "| style | H: most images to 80 % over seeds | W: fewest images to 80 % (or budget) | W / H |", "|---|---|---|---|"]
    for style in sorted({s for s, _ in by}):
        h, w = by.get((style, "H"), []), by.get((style, "W"), [])
        if not h or not w:
            continue
        h_worst = max((r["images_to_target"] or float("inf")) for r in h)
        w_best, missed = min(((r["images_to_target"], False) if r["images_to_target"] is not None
                              else (r["steps"] * r["batch"], True)) for r in w)
        bound = "≥ " if missed else ""  # the fewest is a budget some W run did not reach 80 % in
        lines.append(f"| {style} | {h_worst} | {w_best}{' (not reached)' if bound else ''} | {bound}{w_best / h_worst:.1f} |")
    text = "\n".join(lines)
    print(text)
    (out / "table.md").write_text(text + "\n")
    plot(by, out / "progress.png")
    return 0


def plot(by, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = sorted({s for s, _ in by})
    figure, axes = plt.subplots(1, len(styles), figsize=(6 * len(styles), 4), squeeze=False)
    colours = {"H": "tab:blue", "W": "tab:orange"}
    for axis, style in zip(axes[0], styles):
        for (s, name), records in sorted(by.items()):
            if s != style:
                continue
            for index, r in enumerate(records):
                xs = [images for _, images, _ in r["curve"]]
                ys = [value for _, _, value in r["curve"]]
                axis.plot(xs, ys, marker=".", color=colours.get(name, "grey"), alpha=0.8, label=f"{name} ({'hypernet' if name == 'H' else 'webui'} defaults)" if index == 0 else None)
        axis.axhline(TARGET, color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_title(f"{style}: style progress at m = 1 (guidance 5)")
        axis.set_xlabel("images seen")
        axis.set_ylabel("progress (0 base, 1 style set)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run")
    one.add_argument("--style", default="water")
    one.add_argument("--recipe", default="H")
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--steps", type=int, default=None, help="default: the recipe's max steps")
    one.add_argument("--every", type=int, default=100)
    one.add_argument("--set", action="append", default=[])
    one.add_argument("--tag", default=None)
    one.add_argument("--threads", type=int, default=1)
    one.add_argument("--judge-only", action="store_true", help="judge the checkpoints of a run already in OUT (one cut short)")
    one.add_argument("--out", default="outputs/quality")
    one.set_defaults(func=run)
    summary = sub.add_parser("report")
    summary.add_argument("out", nargs="?", default="outputs/quality")
    summary.add_argument("--all", action="store_true", help="include runs with --set overrides")
    summary.set_defaults(func=report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
