"""`hypernet list`: the hypernetworks in a library folder, with the name a prompt tag
should use, their feature sizes, file size and preview image."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..library import DEFAULT_ROOT, Library


def register(sub) -> None:
    parser = sub.add_parser("list", help="list the hypernetworks in a library folder", description=__doc__)
    parser.add_argument("--dir", default=DEFAULT_ROOT, help=f"library folder (default {DEFAULT_ROOT})")
    parser.add_argument("--extra-dir", action="append", default=[], metavar="DIR", help="another folder to list as well (repeatable)")
    parser.add_argument("--no-packaged", action="store_true",
                        help="leave out the demo networks shipped with hypernet (water, neon)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def ambiguity_lines(library: Library) -> list[str]:
    lines = []
    for name, entries in library.ambiguities().items():
        names = ", ".join(library.tag_name(entry) for entry in entries)
        lines.append(f"warning: {len(entries)} files are named {name!r}; tag them by these names instead: {names}")
    return lines


def run(args) -> int:
    from ..inspection import human_bytes

    from ..loading import PACKAGED_LIBRARY

    packaged = [] if args.no_packaged or not PACKAGED_LIBRARY.is_dir() else [PACKAGED_LIBRARY]
    library = Library(args.dir, extra_roots=[*args.extra_dir, *packaged])
    entries = library.entries()
    infos = [library.info(entry) for entry in entries]
    for info, entry in zip(infos, entries):
        info["packaged"] = bool(packaged) and entry.root is not None and Path(entry.root).resolve() == PACKAGED_LIBRARY.resolve()
    warnings = [str(warning) for warning in library.warnings] + ambiguity_lines(library)
    if args.json:
        print(json.dumps({"roots": [str(root) for root in library.roots], "entries": infos, "warnings": warnings}, indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print(f"no hypernetworks in {', '.join(map(str, library.roots))}")
    else:
        rows = [("NAME", "SIZES", "FILE", "PREVIEW", "PATH")]
        for info in infos:
            sizes = ", ".join(map(str, info["sizes"])) if info["sizes"] else "unreadable"
            name = info["tag_name"] + (" (packaged)" if info["packaged"] else "")
            rows.append((name, sizes, human_bytes(info["size_bytes"]), info["preview"] or "-", info["path"]))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
        for info in infos:
            if info["error"]:
                warnings.append(f"warning: {info['error']}")
    for line in warnings:
        print(line if line.startswith("warning:") else f"warning: {line}", file=sys.stderr)
    return 0
