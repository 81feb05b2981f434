"""`hypernet inspect`: what a hypernetwork file (or a LoRA file) holds."""

from __future__ import annotations

import json

from ..inspection import format_description, inspect_file


def register(sub) -> None:
    parser = sub.add_parser("inspect", help="show a hypernetwork (or LoRA) file's structure and metadata", description=__doc__)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args) -> int:
    infos = [inspect_file(path) for path in args.files]
    if args.json:
        print(json.dumps(infos[0] if len(infos) == 1 else infos, indent=2))
    else:
        print("\n\n".join(format_description(info) for info in infos))
    return 0
