"""`hypernet train NAME --data DIR`: train a hypernetwork with every option of the webui's
Train tab. NAME is a hypernetwork in the library folder or a file path; the trained
network is saved over that file (as the webui does) unless --output says otherwise, and
every checkpoint, preview, the loss CSV and plot go to the run folder."""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace
from pathlib import Path

from ..errors import HypernetError
from ..training.results import StopReason
from .options import fraction
from .signals import signals_stop

DEFAULT_LIBRARY = "models/hypernetworks"
EXIT_CODES = {StopReason.FINISHED: 0, StopReason.ALREADY_FINISHED: 0, StopReason.INTERRUPTED: 130,
              StopReason.NON_FINITE_LOSS: 1, StopReason.NON_FINITE_WEIGHTS: 1, StopReason.DIVERGED: 1}


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 512x512 (WIDTHxHEIGHT)")
    return int(parts[0]), int(parts[1])


_probability = fraction("probability", "0.1")


def register(sub) -> None:
    from ..training.config import CHECKPOINTING, CLIP_MODES, LATENT_SAMPLING, PRECISIONS, RESIZE_MODES, TrainingConfig

    ours = TrainingConfig(data=".")

    parser = sub.add_parser("train", help="train a hypernetwork on a folder of images", description=__doc__,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("name", help="hypernetwork name in --hypernet-dir, or a .pt/.safetensors file")
    parser.add_argument("--data", required=True, help="folder of images with optional .txt captions")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=None, help="checkpoint or diffusers folder (default: the embedded toy model)")
    model.add_argument("--model-family", default=None, choices=["sd15", "sd2", "sd2-v", "sdxl", "sdxl-v"], help="override the detected family")
    model.add_argument("--hypernet-dir", default=DEFAULT_LIBRARY, help="hypernetwork library folder")
    model.add_argument("--new", action="store_true",
                       help="train a new network NAME even if the library (the package's demo networks included) "
                            "has one; it is written to --hypernet-dir/NAME.pt, which must not exist yet")
    model.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")

    steps = parser.add_argument_group("steps and learning rate")
    steps.add_argument("--webui-defaults", action="store_true",
                       help="start from the webui's defaults (learning rate 1e-5, batch 1, 100000 steps, Normal init "
                            "for a new network, ...) instead of hypernet's; flags given still win")
    steps.add_argument("--learning-rate", "--lr", default=None, metavar="SCHEDULE",
                       help=f"rate or schedule 'RATE:STEP, RATE:STEP, RATE' (training ends at the last STEP; default {ours.learning_rate!r})")
    steps.add_argument("--batch-size", type=int, default=None, help=f"default {ours.batch_size}")
    steps.add_argument("--gradient-accumulation", "--gradient-step", type=int, default=None,
                       help=f"micro-batches per optimizer step (default {ours.gradient_accumulation})")
    steps.add_argument("--max-steps", type=int, default=None, help=f"default {ours.max_steps}")
    steps.add_argument("--clip-grad", choices=CLIP_MODES, default=None, help=f"gradient clipping mode (default {ours.clip_grad})")
    steps.add_argument("--clip-value", default=None, metavar="SCHEDULE", help=f"clip threshold (schedule grammar; default {ours.clip_value})")
    steps.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                       help="after the run, fit the multiplier's calibration curve on the training captions so that "
                            "0.5 is about half the look (hypernet calibrate; the webui ignores it) (default: on; off "
                            "with --webui-defaults)")
    steps.add_argument("--auto-recover", action=argparse.BooleanOptionalAction, default=None,
                       help="when the loss diverges (or turns non-finite), go back to the last good weights with "
                            "half the learning rate (at most 4 times); --no-auto-recover only warns (default: on; "
                            "off with --webui-defaults)")
    steps.add_argument("--seed", type=int, default=None, help="run seed (default: random, or the resumed run's)")
    steps.add_argument("--precision", choices=PRECISIONS, default="auto",
                       help="autocast: auto follows the model's dtype; fp32 master weights always")
    steps.add_argument("--gradient-checkpointing", choices=CHECKPOINTING, default="auto",
                       help="auto: switched on only when CUDA memory runs out")

    images = parser.add_argument_group("dataset")
    images.add_argument("--size", type=_size, default=None, help="training WIDTHxHEIGHT (default: the model's native size)")
    images.add_argument("--resize", choices=RESIZE_MODES, default="stretch",
                        help="stretch to --size (webui), keep each image's size, or aspect-ratio buckets of about --size")
    images.add_argument("--varsize", action="store_const", const="keep", dest="resize",
                        help="the webui's 'do not resize images' (= --resize keep)")
    images.add_argument("--flip", action="store_true", help="random horizontal flips (the webui never flips)")
    images.add_argument("--template", default=None, help=f"prompt template: a name or a file path (default {ours.template})")
    images.add_argument("--template-dir", action="append", default=[], help="extra folder of templates (repeatable)")
    images.add_argument("--filename-word-regex", default="", help="caption from file names: keep the words this matches")
    images.add_argument("--filename-join", default=" ", help="string joining those words")
    images.add_argument("--shuffle-tags", action="store_true", help="shuffle the caption's comma-separated tags")
    images.add_argument("--tag-dropout", type=_probability, default=0.0, help="drop each tag with this probability")
    images.add_argument("--caption-dropout", type=_probability, default=None,
                        help="train this share of examples on the empty prompt (the unconditional branch of CFG), "
                             f"so the look reaches pictures generated with guidance (not in the webui; default {ours.caption_dropout})")
    images.add_argument("--latent-sampling", choices=LATENT_SAMPLING, default="once")
    images.add_argument("--use-alpha-weight", action="store_true", help="weight the loss by the PNG alpha channel")

    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--save-every", type=int, default=None, help=f"checkpoint every N steps (0: final only; default {ours.save_every})")
    outputs.add_argument("--preview-every", type=int, default=None, help=f"preview picture every N steps (0: none; default {ours.preview_every})")
    outputs.add_argument("--preview-prompt", default=None, help="default: the first prompt of the current batch")
    outputs.add_argument("--preview-negative", default="")
    outputs.add_argument("--preview-steps", type=int, default=20)
    outputs.add_argument("--preview-sampler", default="Euler a")
    outputs.add_argument("--preview-cfg", type=float, default=7.0)
    outputs.add_argument("--preview-seed", type=int, default=None, help="default: the run seed")
    outputs.add_argument("--preview-size", type=_size, default=None, help="default: the training size")
    outputs.add_argument("--log-dir", default="training", help="runs go to LOG_DIR/DATE/NAME")
    outputs.add_argument("--run-dir", default=None, help="exact run folder (overrides --log-dir)")
    outputs.add_argument("--csv-every", type=int, default=1, help="loss CSV row every N steps (0: none)")
    outputs.add_argument("--output", default=None, help="final file (default: over NAME's file, as the webui)")
    outputs.add_argument("--no-optimizer-state", action="store_true", help="do not write .optim side-cars")
    outputs.add_argument("--tensorboard", action="store_true", help="TensorBoard logs in the run folder (if installed)")
    outputs.add_argument("--resume", default=None, metavar="FILE", help="continue from a checkpoint of an earlier run")
    outputs.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def resolve_network(name: str, hypernet_dir):
    """(path, output default) for NAME: a file, or a library name. A network shipped inside
    the package is never overwritten: its trained copy goes to the library folder."""
    from ..loading import PACKAGED_LIBRARY, open_library

    path = Path(name)
    if path.is_file():
        return path, path
    entry = open_library(hypernet_dir).resolve(name)
    if entry.root is not None and Path(entry.root).resolve() == PACKAGED_LIBRARY.resolve():
        return entry.path, Path(hypernet_dir) / entry.path.name
    return entry.path, entry.path


# Options whose default depends on --webui-defaults: None on the command line means "the preset's".
PRESET_OPTIONS = ("learning_rate", "batch_size", "gradient_accumulation", "max_steps", "clip_grad", "clip_value",
                  "template", "caption_dropout", "save_every", "preview_every", "auto_recover", "calibrate")


def find_network(name: str, hypernet_dir):
    """`resolve_network(name)`, or None when NAME names no file and no library entry (it
    is then made new). A path-like NAME that is missing, or an ambiguous name, fails."""
    from ..library.catalog import UnknownNameError

    looks_like_path = any(part in name for part in ("/", "\\")) or name.endswith((".pt", ".safetensors"))
    try:
        return resolve_network(name, hypernet_dir)
    except UnknownNameError as error:
        if looks_like_path:
            raise HypernetError(f"hypernetwork file {name} does not exist") from None
        near = f" (a typo? the library has: {', '.join(error.suggestions)})" if getattr(error, "suggestions", None) else ""
        print(f"no hypernetwork {name!r} in {hypernet_dir}{near}: training a new one", file=sys.stderr)
        return None


def new_network(name: str, hypernet_dir, pipe, *, webui: bool, seed: int | None):
    """(network, output path) for a network made for this model: every attention width
    of its UNet (the webui's all-sizes default), with hypernet's (or the webui's) layer
    options. Nothing is written until training saves it."""
    from ..attention import attention_widths
    from ..creation import clean_name
    from ..network import Hypernetwork
    from ..training.defaults import network_options, webui_network_options

    widths = attention_widths(pipe.unet)
    options = webui_network_options() if webui else network_options()
    network = Hypernetwork.create(sizes=widths, name=clean_name(name), generator_seed=seed, **options)
    output = Path(hypernet_dir) / f"{clean_name(name)}.pt"
    print(f"new hypernetwork {output.name}: sizes {', '.join(map(str, widths))}, "
          f"{'-'.join(f'{w:g}' for w in options['layer_structure'])} {options['activation']}, "
          f"{options['weight_init']} init", file=sys.stderr)
    return network, output


def config_from_args(args):
    from ..training.config import PreviewOptions, TrainingConfig
    from ..training.defaults import webui_config

    preset = webui_config(args.data) if args.webui_defaults else TrainingConfig(data=args.data)
    chosen = {name: getattr(preset, name) if getattr(args, name) is None else getattr(args, name) for name in PRESET_OPTIONS}
    width, height = args.size or (None, None)
    preview_width, preview_height = args.preview_size or (None, None)
    return preset.replace(
        **chosen, width=width, height=height,
        resize=args.resize, flip=args.flip, template_dirs=tuple(args.template_dir),
        filename_word_regex=args.filename_word_regex, filename_join=args.filename_join,
        shuffle_tags=args.shuffle_tags, tag_dropout=args.tag_dropout,
        latent_sampling=args.latent_sampling, use_alpha_weight=args.use_alpha_weight,
        preview=PreviewOptions(prompt=args.preview_prompt, negative_prompt=args.preview_negative,
                               steps=args.preview_steps, sampler=args.preview_sampler, cfg_scale=args.preview_cfg,
                               seed=args.preview_seed, width=preview_width, height=preview_height),
        log_dir=args.log_dir, run_dir=args.run_dir, csv_every=args.csv_every, seed=args.seed,
        precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
        save_optimizer_state=not args.no_optimizer_state, tensorboard=args.tensorboard,
    )


def run(args) -> int:
    from ..formats import load
    from ..loading import load_pipeline_for, model_info
    from .defaults import toy_model_loader
    from ..training import describe_result, train
    from ..training.plan import check_inputs

    config = config_from_args(args)
    found = None if args.new else find_network(args.name, args.hypernet_dir)
    if found is None:
        from ..creation import clean_name

        clean_name(args.name)  # a name a file can have, checked before the model loads
    if args.new:
        target = Path(args.hypernet_dir) / f"{clean_name(args.name)}.pt"
        if target.exists():
            raise HypernetError(f"--new: {target} exists; remove it or choose another name (without --new, "
                                f"training continues it)")
    inputs = check_inputs(config)  # before the (slow) model load: bad input fails at once

    from accelerate import Accelerator

    import torch

    device = args.device
    # On a machine without CUDA, accelerate forms a process group (gloo) only when told
    # cpu=True; otherwise every process of `torchrun` would train alone, on its own.
    accelerator = Accelerator(cpu=device == "cpu" or (device is None and not torch.cuda.is_available()))
    if accelerator.num_processes > 1 or device is None:
        device = str(accelerator.device)
    default_model = toy_model_loader()
    pipe = load_pipeline_for(args.model, family=args.model_family, device=device, progress=not args.quiet,
                             default_model=default_model)

    if args.model is None:  # the embedded model's judge measures styles with DDIM at CFG 5: calibrate as it looks
        from .calibrate import TOY_CFG, TOY_SAMPLER

        config = config.replace(calibration=replace(config.calibration, sampler=TOY_SAMPLER, cfg=TOY_CFG))
    if found is None:
        network, output = new_network(args.name, args.hypernet_dir, pipe, webui=args.webui_defaults, seed=config.seed)
    else:
        source, output = found
        network = load(source)
    if args.output:
        output = Path(args.output)
    stop = threading.Event()
    with signals_stop(stop):
        result = train(pipe, network, config, output=output, resume=args.resume,
                       model=model_info(args.model, default_model), accelerator=accelerator, progress=not args.quiet, stop=stop.is_set, inputs=inputs)
    if accelerator.is_main_process:
        print(describe_result(result))
        if result.stop_reason == StopReason.INTERRUPTED and result.checkpoints:
            print(f"resume with: hypernet train {args.name} --data {args.data} --resume {result.checkpoints[-1]} ...")
    if result.stop_reason not in EXIT_CODES:
        raise HypernetError(f"training ended: {result.stop_reason}")
    return EXIT_CODES[result.stop_reason]
