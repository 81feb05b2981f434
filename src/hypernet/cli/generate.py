"""`hypernet generate`: txt2img with `<hypernet:NAME:M>` tags in the prompt."""

from __future__ import annotations

import sys
import threading

from ..errors import HypernetError
from .signals import signals_stop
from ..samplers import DEFAULT_SAMPLER

DEFAULT_LIBRARY = "models/hypernetworks"


def size(text: str) -> tuple[int, int]:
    import argparse

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 512x512 (WIDTHxHEIGHT)")
    return int(parts[0]), int(parts[1])


def memory_limit(text: str):
    import argparse

    from ..memory import parse_memory_limit

    try:
        return parse_memory_limit(text)
    except HypernetError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_model_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="checkpoint (.safetensors/.ckpt) or diffusers folder; default: the embedded toy model")
    parser.add_argument("--model-family", default=None, choices=["sd15", "sd2", "sd2-v", "sdxl", "sdxl-v"], help="override the detected model family")
    parser.add_argument("--hypernet-dir", default=DEFAULT_LIBRARY, help=f"hypernetwork library folder (default {DEFAULT_LIBRARY})")
    parser.add_argument("--lora-dir", default="models/Lora", help="LoRA folder for <lora:NAME:M> (default models/Lora)")
    parser.add_argument("--embeddings-dir", default="models/embeddings", help="textual-inversion embeddings folder (default models/embeddings)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def add_sampling_arguments(parser, out: str = "outputs/txt2img") -> None:
    parser.add_argument("--negative", default="", help="negative prompt")
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, help=f"webui sampler name (default {DEFAULT_SAMPLER!r}; e.g. 'DPM++ 2M Karras', DDIM, UniPC)")
    parser.add_argument("--schedule", default=None, help="schedule type: Automatic, Karras, Exponential")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0, help="CFG scale (default 7)")
    parser.add_argument("--size", type=size, default=None, help="WIDTHxHEIGHT (default: the model's native size)")
    parser.add_argument("--out", default=out, help=f"output folder (default {out})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-fold", dest="fold", action="store_false",
                        help="run linear hypernetworks as MLPs instead of folding them into to_k/to_v (same picture within fp32 rounding)")
    parser.add_argument("--max-memory", type=memory_limit, default="auto", metavar="SIZE",
                        help="refuse requests needing more memory than this: a size (24G, 800M), auto (default: "
                        "what the device has free) or off")


def register(sub) -> None:
    parser = sub.add_parser("generate", help="generate images (txt2img)", description=__doc__)
    parser.add_argument(
        "prompt", nargs="*", help="prompt; <hypernet:NAME:MULTIPLIER> tags pick hypernetworks; "
        "several prompts are generated one after the other with the model loaded once",
    )
    add_sampling_arguments(parser)
    parser.add_argument("--seed", type=int, default=-1, help="seed (default -1: random); image i of a batch uses seed+i")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--batch-count", type=int, default=1)
    parser.add_argument("--from-png", default=None, metavar="FILE", help="reproduce an image from its PNG infotext")
    parser.add_argument("--from-file", default=None, metavar="FILE",
                        help="prompts from a file, one per line, or webui-style option lines (--prompt \"a cat\" --steps 10); "
                        "files L0003-I00-SEED.png and index.jsonl; a re-run skips what exists; "
                        "under accelerate launch / torchrun the lines are shared between processes")
    add_hires_arguments(parser)
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def add_hires_arguments(parser) -> None:
    from ..request import LATENT_UPSCALERS, PIXEL_UPSCALERS

    group = parser.add_argument_group("hires fix", "generate at --size, upscale, denoise again at the larger size")
    group.add_argument("--hires", nargs="?", type=float, const=2.0, default=None, metavar="SCALE",
                       help="turn the hires fix on; upscale by SCALE (default 2)")
    group.add_argument("--hires-size", type=size, default=None, metavar="WxH", help="upscale to this size instead")
    group.add_argument("--hires-upscaler", default="Latent", choices=[*LATENT_UPSCALERS, *PIXEL_UPSCALERS])
    group.add_argument("--hires-steps", type=int, default=0, help="second-pass steps (default 0: as --steps)")
    group.add_argument("--hires-denoise", type=float, default=0.7, help="second-pass denoising strength (default 0.7)")
    group.add_argument("--hires-prompt", default="", help="second-pass prompt; its tags apply there (default: the prompt)")
    group.add_argument("--hires-negative", default="", help="second-pass negative prompt (default: --negative)")
    group.add_argument("--hires-sampler", default=None, help="second-pass sampler (default: --sampler)")
    group.add_argument("--hires-cfg", type=float, default=None, help="second-pass CFG scale (default: --cfg)")


def hires_settings(args):
    """The HiresFix the options ask for, or None."""
    from ..request import HiresFix

    if args.hires is None and args.hires_size is None:
        return None
    width, height = args.hires_size or (0, 0)
    return HiresFix(scale=args.hires or 2.0, upscaler=args.hires_upscaler, steps=args.hires_steps,
                    denoising_strength=args.hires_denoise, resize_width=width, resize_height=height,
                    prompt=args.hires_prompt, negative_prompt=args.hires_negative, sampler=args.hires_sampler,
                    cfg_scale=args.hires_cfg)


def run(args) -> int:
    from ..generation import Request
    from ..outputs import request_from_infotext

    if args.from_file:
        if args.prompt or args.from_png:
            raise HypernetError("give prompts either as arguments, with --from-png or with --from-file, not several")
        return run_from_file(args)
    if args.from_png:
        from ..infotext import read_png_infotext

        text = read_png_infotext(args.from_png)
        if not text:
            raise HypernetError(f"{args.from_png}: has no 'parameters' infotext to reproduce")
        requests = [request_from_infotext(text)]
    elif not args.prompt:
        raise HypernetError("give a PROMPT (or several) or --from-png FILE")
    else:
        width, height = args.size or (None, None)
        requests = [
            Request(
                prompt=prompt, negative_prompt=args.negative, steps=args.steps, cfg_scale=args.cfg, seed=args.seed,
                width=width, height=height, sampler=args.sampler, schedule=args.schedule,
                batch_size=args.batch_size, batch_count=args.batch_count, hires=hires_settings(args),
            )
            for prompt in args.prompt
        ]
    return generate_and_write(args, requests)


def generate_and_write(args, requests) -> int:
    """Run `requests` with the model the options name, each image written as it is
    decoded; a first Ctrl-C finishes the image in progress."""
    from ..generation import Control
    from ..loading import load_generator
    from ..outputs import ImageWriter
    from .defaults import toy_model_loader

    writer = ImageWriter(args.out)  # an output folder that cannot be made fails before the model loads
    generator = load_generator(args.model, hypernet_dir=args.hypernet_dir, family=args.model_family, device=args.device,
                               progress=not args.quiet, lora_dir=args.lora_dir, embeddings_dir=args.embeddings_dir,
                               default_model=toy_model_loader(), fold=args.fold, memory_limit=args.max_memory)
    control = Control()
    printed: set[str] = set()

    def on_result(result) -> None:  # each image is on disk as soon as it is decoded
        print(f"{writer.write(result)}  seed {result.seed}", flush=True)
        control.interrupted = stop.is_set()  # a first Ctrl-C: no further batch starts

    stop = threading.Event()
    try:
        with signals_stop(stop, what="the image in progress"):
            for request in requests:
                if stop.is_set():
                    break
                generator.generate(request, progress=not args.quiet, on_result=on_result, control=control)
                print_warnings(generator, printed)
    except KeyboardInterrupt:
        stop.set()
    if stop.is_set():
        count = len(writer.written)
        print(f"hypernet generate: interrupted; {count} image{'' if count == 1 else 's'} written to {writer.folder}",
              file=sys.stderr)
        return 130
    return 0


def run_from_file(args) -> int:
    from ..fileio import make_folder
    from ..loading import load_generator
    from ..prompt_file import (check_requests, pending, plan, read_prompt_file, run_items, shard,
                               shard_from_environment, write_index)
    from ..request import Request
    from .defaults import toy_model_loader

    width, height = args.size or (None, None)
    defaults = Request(prompt="", negative_prompt=args.negative, steps=args.steps, cfg_scale=args.cfg, seed=args.seed,
                       width=width, height=height, sampler=args.sampler, schedule=args.schedule,
                       batch_size=args.batch_size, batch_count=args.batch_count)
    lines = read_prompt_file(args.from_file, defaults)
    items = plan(lines)
    rank, world_size = shard_from_environment()
    mine = shard(items, rank, world_size)
    folder = make_folder(args.out)
    who = f"process {rank} of {world_size}: " if world_size > 1 else ""
    if not pending(mine, folder) and all(e.request.width and e.request.height for e in lines):
        write_index(folder, items, None)  # all done: no model to load
        print(f"hypernet generate: {who}skipped {_images(sum(len(i.names) for i in mine))} already in {folder}",
              file=sys.stderr)
        return 0
    generator = load_generator(args.model, hypernet_dir=args.hypernet_dir, family=args.model_family,
                               device=args.device or _process_device(world_size), progress=not args.quiet,
                               lora_dir=args.lora_dir, embeddings_dir=args.embeddings_dir,
                               default_model=toy_model_loader(), fold=args.fold, memory_limit=args.max_memory)
    native = generator.native_size
    check_requests(generator, lines, source=args.from_file)

    def on_image(path, result) -> None:
        print(f"{path}  seed {result.seed}", flush=True)

    written = skipped = 0
    stop = threading.Event()
    try:
        with signals_stop(stop, what="the image in progress"):
            written, skipped = run_items(generator, mine, folder, on_image=on_image, should_stop=stop.is_set,
                                         source=args.from_file, progress=not args.quiet)
    except KeyboardInterrupt:
        stop.set()
    print_warnings(generator, set())
    index = write_index(folder, items, native)
    if skipped:
        print(f"hypernet generate: {who}skipped {_images(skipped)} already in {folder}",
              file=sys.stderr)
    if stop.is_set():
        print(f"hypernet generate: {who}interrupted; {_images(written)} written to {folder}; "
              "run the same command again to go on", file=sys.stderr)
        return 130
    print(f"hypernet generate: {who}{_images(written)} written; index {index}", file=sys.stderr)
    return 0


def print_warnings(generator, printed: set) -> None:
    """The generator's warnings (a hypernetwork that fits no width of the model, ...),
    one line each on stderr, each once."""
    for warning in generator.warnings:
        if warning not in printed:
            printed.add(warning)
            print(f"hypernet generate: warning: {warning}", file=sys.stderr)


def _images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


def _process_device(world_size: int):
    """One GPU per process when launched as several (cuda:LOCAL_RANK); None otherwise."""
    import os

    import torch

    if world_size > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return None
