"""`hypernet create`: a new hypernetwork file, with the webui create form's options."""

from __future__ import annotations

from ..network import ACTIVATIONS, DEFAULT_SIZES, WEIGHT_INITS
from .options import integer_list, number_list

DEFAULT_LIBRARY = "models/hypernetworks"


def register(sub) -> None:
    parser = sub.add_parser("create", help="create a new hypernetwork file", description=__doc__)
    parser.add_argument("name", help="file base name (the <hypernet:NAME> in prompts)")
    parser.add_argument("--sizes", type=integer_list, default=list(DEFAULT_SIZES), help="feature sizes ('Modules'), default 768,320,640,1280; 1024 for SD2 cross-attention")
    parser.add_argument("--layer-structure", type=number_list, default=[1.0, 2.0, 1.0], help="width multipliers, must start and end with 1 (default '1, 2, 1')")
    parser.add_argument("--activation", default="linear", choices=sorted(ACTIVATIONS), metavar="NAME", help="activation function (default linear = none; 'swish' is Hardswish as in the webui)")
    parser.add_argument("--weight-init", default="ZeroLast", choices=list(WEIGHT_INITS),
                        help="weight initialisation (default ZeroLast: hypernet's, the network starts as the identity; "
                             "Normal is the webui's; docs/training.md, Defaults)")
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
    from ..creation import create_hypernetwork

    target, network = create_hypernetwork(
        args.name, args.dir, sizes=args.sizes, layer_structure=args.layer_structure, activation=args.activation,
        weight_init=args.weight_init, layer_norm=args.layer_norm,
        dropout_structure=args.dropout_structure if args.use_dropout else None,
        activate_output=args.activate_output, optional_info=args.optional_info, file_format=args.format,
        overwrite=args.overwrite, seed=args.seed)
    print(f"created {target} ({network.parameter_count():,} parameters, sizes {', '.join(map(str, network.sizes))})")
    return 0
