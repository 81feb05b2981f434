"""`hypernet export-lora`: a hypernetwork as a LoRA file (kohya/webui layout by default)
that diffusers, ComfyUI, Forge, InvokeAI and the webui load, for one base model."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import HypernetError
from .generate import DEFAULT_LIBRARY
from .options import fraction


def _rank(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rank {text!r} must be a whole number, e.g. 16") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"rank {value} must be at least 1")
    return value


_error = fraction("relative error", "0.01")


def register(sub) -> None:
    parser = sub.add_parser("export-lora", help="export a hypernetwork as a LoRA file for one base model",
                            description=__doc__)
    parser.add_argument("name", metavar="NAME", help="hypernetwork: a library name or a file")
    parser.add_argument("out", metavar="OUT.safetensors")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rank", type=_rank, default=None, help="LoRA rank (default: full rank, exact for linear networks)")
    size.add_argument("--error", type=_error, default=None, metavar="E",
                      help="per layer, the smallest rank whose relative error is at most E (e.g. 0.01)")
    parser.add_argument("--multiplier", type=float, default=1.0,
                        help="the hypernetwork strength the LoRA reproduces at weight 1 (default 1)")
    parser.add_argument("--format", choices=["kohya", "diffusers"], default="kohya",
                        help="key layout: kohya (webui, ComfyUI, Forge, InvokeAI, diffusers) or diffusers (peft)")
    parser.add_argument("--value-offset", choices=["fold", "drop"], default="fold",
                        help="linear networks: the constant they add to the values is folded exactly where inputs "
                             "leave a LayerNorm (default), or dropped")
    parser.add_argument("--prompts", default=None, metavar="FILE",
                        help="prompts (one per line) whose activations fit a non-linear network (or any, with --fit); default with the "
                             "embedded model: its world's captions")
    parser.add_argument("--fit", action="store_true",
                        help="fit over activations even a linear network (weighs the rank truncation by real inputs)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per prompt when fitting (default 20)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                        help="tensor precision in the file (default float32)")
    parser.add_argument("--model", default=None, help="base model: checkpoint or diffusers folder; default the embedded toy model")
    parser.add_argument("--model-family", default=None, choices=["sd15", "sd2", "sd2-v", "sdxl", "sdxl-v"])
    parser.add_argument("--hypernet-dir", default=DEFAULT_LIBRARY, help=f"hypernetwork library folder (default {DEFAULT_LIBRARY})")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def _network(name: str, hypernet_dir: str):
    from ..formats import load
    from ..loading import open_library

    if Path(name).is_file():
        return load(name)
    return open_library(hypernet_dir).load(name)


def _prompts(args) -> list[str] | None:
    if args.prompts is not None:
        try:
            lines = Path(args.prompts).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise HypernetError(f"{args.prompts}: cannot read the prompts ({error})") from None
        prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not prompts:
            raise HypernetError(f"{args.prompts}: holds no prompts (one per line)")
        return prompts
    if args.model is None:
        from .defaults import toy_prompts

        return toy_prompts()
    return None


def run(args) -> int:
    from ..loading import load_pipeline_for, model_info
    from ..lora_export import export_lora
    from .defaults import toy_model_loader

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise HypernetError(f"{out}: the LoRA is written as .safetensors; name the file so")
    if out.exists() and not args.overwrite:
        raise HypernetError(f"{out} exists; pass --overwrite to replace it")
    if not math.isfinite(args.multiplier):
        raise HypernetError(f"--multiplier {args.multiplier} must be a finite number")
    if args.steps < 1:
        raise HypernetError(f"--steps {args.steps} must be at least 1")
    network = _network(args.name, args.hypernet_dir)
    default = toy_model_loader()
    pipe = load_pipeline_for(args.model, family=args.model_family, device=args.device, progress=False,
                             default_model=default, dtype=None)
    report = export_lora(
        pipe, network, out, multiplier=args.multiplier, rank=args.rank, error=args.error, layout=args.format,
        fold_value_bias=args.value_offset == "fold", prompts=_prompts(args), steps=args.steps,
        base_model=model_info(args.model, default), dtype=args.dtype, fit=args.fit,
    )
    if args.json:
        print(json.dumps({"path": str(report.path), "layout": report.layout, "method": report.method,
                          "multiplier": report.multiplier, "bytes_on_disk": report.bytes_on_disk,
                          "error_measured_on": report.error_measured_on,
                          "layers": [layer.__dict__ for layer in report.layers]}, indent=2))
        return 0
    print(format_report(report))
    return 0


def format_report(report) -> str:
    width = max(len(layer.module) for layer in report.layers)
    rows = [f"{'module':<{width}}  rank  error    offset"]
    rows += [f"{layer.module:<{width}}  {layer.rank:>4}  {layer.error:<7.2e}  {layer.bias}" for layer in report.layers]
    method = "exact (affine network)" if report.method == "exact" else "least-squares fit over activations"
    ranks = ", ".join(map(str, report.ranks))
    rows += ["", f"wrote {report.path} ({report.layout} layout, {report.bytes_on_disk:,} bytes): {method}, "
                 f"{len(report.layers)} projections, rank {ranks}, largest error {report.max_error:.2e} "
                 f"(on {report.error_measured_on})"]
    return "\n".join(rows)
