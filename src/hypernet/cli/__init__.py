"""The `hypernet` command. Faces are thin: each sub-command module parses its arguments,
calls the library and prints the result. A module registers itself with `register(sub)`,
where `sub` is argparse's sub-parser collection, and sets `func` on its parser."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import HypernetError

# Sub-command modules, in the order `hypernet --help` lists them. A module that is not
# there yet (a layer still being built) is skipped, so the CLI never fails to start.
COMMAND_MODULES = [
    "generate",
    "img2img",
    "grid",
    "xyz",
    "library",
    "create",
    "inspect",
    "convert",
    "export_lora",
    "calibrate",
    "train",
    "prompt",
    "serve",
    "toy",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypernet", description="Stable Diffusion hypernetworks on diffusers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except HypernetError as error:
        print(f"hypernet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"hypernet {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)
