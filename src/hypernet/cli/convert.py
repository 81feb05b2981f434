"""`hypernet convert`: between webui `.pt` and `.safetensors`, losslessly."""

from __future__ import annotations

from pathlib import Path

from ..errors import HypernetError
from ..formats import load, save


def register(sub) -> None:
    parser = sub.add_parser("convert", help="convert a hypernetwork between .pt and .safetensors", description=__doc__)
    parser.add_argument("source", metavar="IN")
    parser.add_argument("target", metavar="OUT", help="output file; its extension (.pt or .safetensors) picks the format")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=run)


def run(args) -> int:
    target = Path(args.target)
    if target.suffix not in (".pt", ".safetensors"):
        raise HypernetError(f"{target}: the output name must end in .pt or .safetensors")
    if target.exists() and not args.overwrite:
        raise HypernetError(f"{target} exists; pass --overwrite to replace it")
    network = load(args.source)
    save(network, target)
    print(f"wrote {target}")
    return 0
