"""Strength grids: one hypernetwork at several multipliers, side by side, over seeds and
prompts: the tool for the seed's advice "lower the multiplier if colours over-saturate"."""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from .errors import HypernetError
from .generation import Generator, Request


def with_multiplier(prompt: str, name: str, multiplier: float) -> str:
    """`prompt` with `<hypernet:name:multiplier>`: an existing tag for `name` is replaced."""
    pattern = re.compile(r"<hypernet:" + re.escape(name) + r"(:[^>]*)?>")
    from .library import format_multiplier

    tag = f"<hypernet:{name}:{format_multiplier(multiplier)}>"
    if pattern.search(prompt):
        return pattern.sub(tag, prompt, count=1)
    return f"{prompt} {tag}".strip()


def strength_grid(generator: Generator, base: Request, name: str, multipliers: Sequence[float],
                  seeds: Sequence[int] = (), prompts: Sequence[str] = (), progress: bool = True):
    """(grid image, rows of results). Rows: every prompt × seed; columns: multipliers.
    The cells run through the X/Y/Z plot's `run_cells` (rows are prompts × seeds, which
    no single X/Y/Z axis spells)."""
    import sys

    from .grid import labelled_grid
    from .xyz import Cell, ProgressLine, run_cells

    if not multipliers:
        raise HypernetError("give at least one multiplier, e.g. 0,0.25,0.5,0.75,1")
    prompts = list(prompts) or [base.prompt]
    seeds = list(seeds) or [base.seed if base.seed is not None and base.seed >= 0 else 0]
    cells, labels = [], []
    for prompt in prompts:
        for seed in seeds:
            for multiplier in multipliers:
                request = dataclasses.replace(base, prompt=with_multiplier(prompt, name, multiplier), seed=seed,
                                              batch_size=1, batch_count=1)
                cells.append(Cell(len(cells) % len(multipliers), len(labels), 0, None, request))
            labels.append(f"seed {seed}" if len(prompts) == 1 else f"{prompt[:40]}\nseed {seed}")
    run_cells(lambda model: generator, cells, progress=progress, check=False,
              on_done=ProgressLine(len(cells), "grid", sys.stdout) if progress else None)
    rows = [[cell.result for cell in cells[row * len(multipliers):(row + 1) * len(multipliers)]]
            for row in range(len(labels))]
    image = labelled_grid([[r.image for r in row] for row in rows], labels, [f"{name}: {m:g}" for m in multipliers],
                          title=prompts[0] if len(prompts) == 1 else None)
    return image, rows
