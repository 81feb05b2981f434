"""After a run: fit the trained network's multiplier calibration (`hypernet.calibration`)
on its own training captions and store it in the output file, so that the multiplier of
a freshly trained network is a dial (0.5 about half the look) and not a cliff.

Measured on the embedded model (docs/training.md, *Defaults*); skipped, with the command
to run later, when the first pictures say it would take longer than the budget (a large
model on a CPU)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import HypernetError


@dataclass
class CalibrationOptions:
    """How the curve is fitted after training: `prompts` distinct training captions, each
    with seeds 0 .. `seeds`-1, `steps` sampling steps; `sampler` and `cfg` None: the
    preview's. Skipped when the estimate exceeds `budget_seconds`."""

    prompts: int = 4
    seeds: int = 2
    steps: int = 20
    sampler: str | None = None
    cfg: float | None = None
    budget_seconds: float = 600.0


class _OverBudget(Exception):
    pass


def calibrating(config) -> bool:
    """`config.calibrate`, unless the environment says HYPERNET_CALIBRATE=0 (for scripts and
    CI runs that train many throw-away networks; the test suite sets it)."""
    return bool(config.calibrate) and os.environ.get("HYPERNET_CALIBRATE", "1").strip() != "0"


def calibration_missing(config, network, output) -> bool:
    """Whether `network`, loaded from the finished `output`, lacks the curve calibration
    should have written (the run that made it was stopped while it calibrated)."""
    source = getattr(network, "source_path", None)
    return (calibrating(config) and output is not None and Path(output).is_file() and source is not None
            and network.metadata.multiplier_calibration is None and Path(source).resolve() == Path(output).resolve())


def caption_prompts(captions: list[str], count: int) -> list[str]:
    """`count` distinct captions spread over the dataset's order."""
    distinct = list(dict.fromkeys(c.strip() for c in captions if c.strip()))
    if len(distinct) <= count:
        return distinct
    return [distinct[round(i * (len(distinct) - 1) / max(1, count - 1))] for i in range(count)]


def calibrate_after_training(pipe, network, config, captions: list[str], size, output, log: Callable[[str], None],
                             progress: bool = True):
    """Fit and write the curve; returns the `Calibration`, or None when skipped (said)."""
    from ..calibration import CHECK_MULTIPLIERS, GRID, calibrate_network
    from ..formats import write_calibration

    options = config.calibration
    prompts = caption_prompts(captions, options.prompts) or [config.preview.prompt or ""]
    total = len(prompts) * options.seeds * (len(GRID) + len(CHECK_MULTIPLIERS))
    started = time.perf_counter()
    later = (f"hypernet calibrate {output} (with --model for a checkpoint) fits it later; the multiplier stays the "
             f"raw one until then")

    def count(done: int) -> None:
        elapsed = time.perf_counter() - started
        estimate = elapsed / done * total
        if done >= options.seeds and estimate > options.budget_seconds:
            raise _OverBudget(estimate)
        if progress and done % max(1, total // 10) == 0:
            log(f"calibrating the multiplier: {done}/{total} pictures, about {estimate - elapsed:.0f} s left")

    log(f"calibrating the multiplier on {len(prompts)} training captions ({total} pictures)")
    try:
        calibration = calibrate_network(pipe, network, prompts, seeds=options.seeds, steps=options.steps,
                                        cfg=options.cfg if options.cfg is not None else config.preview.cfg_scale,
                                        size=size, progress=count, sampler=options.sampler or config.preview.sampler)
    except _OverBudget as over:
        log(f"calibration skipped: it would take about {float(over.args[0]) / 60:.0f} min here, more than its budget "
            f"of {options.budget_seconds / 60:.0f} min; {later}")
        return None
    except HypernetError as error:
        log(f"calibration skipped ({error}); {later}")
        return None
    write_calibration(output, calibration.curve)
    points = dict(calibration.curve)
    shown = ", ".join(f"{u:g} -> {points[u]:.2f}" for u in (0.25, 0.5, 0.75) if u in points)
    log(f"calibrated the multiplier in {time.perf_counter() - started:.0f} s (user -> internal: {shown}); "
        f"written to {output}")
    return calibration
