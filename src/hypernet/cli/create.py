"""`hypernet create`: a new hypernetwork file, with the webui create form's options."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import HypernetError
from ..formats import save
from ..network import ACTIVATIONS, DEFAULT_SIZES, WEIGHT_INITS, Hypernetwork
from .options import integer_list, number_list

DEFAULT_LIBRARY = "models/hypernetworks"


def clean_name(name: str) -> str:
    """The webui keeps only alphanumerics and '._- ' in a new network's name."""
    cleaned = re.sub(r"[^\w.\- ]", "", name, flags=re.ASCII).strip()
    if not cleaned:
        raise HypernetError(f"name {name!r} has no usable characters (letters, digits, '.', '_', '-', space)")
    return cleaned


def register(sub) -> None:
    parser = sub.add_parser("create", help="create a new hypernetwork file", description=__doc__)
    parser.add_argument("name", help="file base name (the <hypernet:NAME> in prompts)")
    parser.add_argument("--sizes", type=integer_list, default=list(DEFAULT_SIZES), help="feature sizes ('Modules'), default 768,320,640,1280; 1024 for SD2 cross-attention")
    parser.add_argument("--layer-structure", type=number_list, default=[1.0, 2.0, 1.0], help="width multipliers, must start and end with 1 (default '1, 2, 1')")
    parser.add_argument("--activation", default="linear", choices=sorted(ACTIVATIONS), metavar="NAME", help="activation function (default linear = none; 'swish' is Hardswish as in the webui)")
    parser.add_argument("--weight-init", default="Normal", choices=list(WEIGHT_INITS), help="weight initialisation (default Normal)")
    parser.add_argument("--layer-norm", action="store_true", help="add a LayerNorm after every Linear")
    parser.add_argument("--use-dropout", action="store_true", help="apply --dropout-structure")
    parser.add_argument("--dropout-structure", type=number_list, default=None, help="dropout after each layer, e.g. '0, 0.05, 0' (first and last 0)")
    parser.add_argument("--activate-output", action="store_true", help="also apply the activation after the output layer")
    parser.add_argument("--optional-info", default=None, help="free text stored in the file")
    parser.add_argument("--dir", default=DEFAULT_LIBRARY, help=f"library folder (default {DEFAULT_LIBRARY})")
    parser.add_argument("--format", choices=["pt", "safetensors"], default="pt", help="file format (default pt, loadable by the webui)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file of that name")
    parser.add_argument("--seed", type=int, default=None, help="seed for the initial weights")
    parser.set_defaults(func=run)


def run(args) -> int:
    name = clean_name(args.name)
    target = Path(args.dir) / f"{name}.{args.format}"
    if target.exists() and not args.overwrite:
        raise HypernetError(f"{target} exists; pass --overwrite to replace it or choose another name")
    dropout = args.dropout_structure if args.use_dropout else None
    if dropout is not None and len(dropout) != len(args.layer_structure):
        raise HypernetError(
            f"--dropout-structure has {len(dropout)} entries but --layer-structure has {len(args.layer_structure)}; give one per layer"
        )
    network = Hypernetwork.create(
        sizes=args.sizes,
        layer_structure=args.layer_structure,
        activation=args.activation,
        weight_init=args.weight_init,
        layer_norm=args.layer_norm,
        dropout_structure=dropout,
        activate_output=args.activate_output,
        name=name,
        optional_info=args.optional_info,
        generator_seed=args.seed,
    )
    save(network, target)
    print(f"created {target} ({network.parameter_count():,} parameters, sizes {', '.join(map(str, network.sizes))})")
    return 0
