"""Fitting a calibration curve, so a multiplier means what it says: at a user's 0.5 the
pictures are about half-way from the base model's to the network's full effect.

A trained hypernetwork's effect is a cliff, not a dial (the demo `water` is 0.05 of the
way at 0.5, 0.95 at 1). The fit is judge-free: the same prompts and seeds are generated
at internal multipliers 0, 0.1, ..., 1 and each picture set is projected, in pixel space,
onto the change the full network makes:

    progress(m) = mean_i <P_i(m) - P_i(0), P_i(1) - P_i(0)> / mean_i ||P_i(1) - P_i(0)||²

made monotone (running maximum, clipped to [0, 1]) and inverted: the curve maps a user
multiplier u to the internal one where progress reaches u. The file stores the curve
(`multiplier_calibration`); `Hypernetwork.effective_multiplier` applies it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import HypernetError
from .multipliers import check_calibration, effective_multiplier
from .network import Hypernetwork

GRID = tuple(round(0.1 * i, 1) for i in range(11))  # internal multipliers measured
USER_STEP = 0.05  # spacing of the curve's user multipliers
CHECK_MULTIPLIERS = (0.25, 0.5, 0.75)  # user multipliers re-measured after the fit
DEFAULT_PROMPTS = (
    "a photograph of a house by a lake",
    "portrait of a woman, studio lighting",
    "a bowl of fruit on a wooden table",
    "a city street at night",
    "a mountain landscape with a river",
)


@dataclass
class Calibration:
    """The fitted curve with what it was fitted on: `measured` (internal multiplier →
    proxy progress, as measured), `monotone` (the same made monotone, what was inverted)
    and `after` (user multiplier → proxy progress with the curve; empty when not checked)."""

    curve: tuple[tuple[float, float], ...]
    measured: dict[float, float]
    monotone: dict[float, float]
    after: dict[float, float]

    def table(self) -> str:
        """The proxy before (per internal multiplier) and the user → internal table."""
        lines = ["internal multiplier -> progress (proxy, before)"]
        lines += [f"  {m:4.2f}  {self.measured[m]:6.3f}" for m in sorted(self.measured)]
        lines.append("user multiplier -> internal multiplier")
        lines += [f"  {u:4.2f}  {i:6.4f}" for u, i in self.curve]
        if self.after:
            lines.append("user multiplier -> progress (proxy, after)")
            lines += [f"  {u:4.2f}  {p:6.3f}" for u, p in sorted(self.after.items())]
        return "\n".join(lines)


def projection_progress(pictures: torch.Tensor, base: torch.Tensor, full: torch.Tensor) -> float:
    """How far `pictures` moved from `base` towards `full` (same prompts and seeds, one
    picture per row): 0 at the base, 1 at the full effect, float32 pixel space."""
    base = base.reshape(base.shape[0], -1).float()
    direction = full.reshape(full.shape[0], -1).float() - base
    scale = float((direction * direction).sum(dim=1).mean())
    if scale == 0.0:
        raise HypernetError("the network changes none of the pictures at multiplier 1: nothing to calibrate")
    moved = pictures.reshape(pictures.shape[0], -1).float() - base
    return float((moved * direction).sum(dim=1).mean()) / scale


def texture_features(pictures: torch.Tensor) -> torch.Tensor:
    """Per picture (rows of (N, H, W, 3) in [0, 1]), colour and texture statistics: each
    channel's mean and spread, saturation, and brightness differences along rows and
    along columns at lags 1 to 4. A style is often a texture (ripples, outlines) that
    barely moves the pixels' average; these numbers see it. Judge-free, model-agnostic."""
    pictures = pictures.float()
    brightness = pictures.mean(dim=-1)
    features = [pictures.mean(dim=(1, 2)), pictures.std(dim=(1, 2)),
                (pictures.amax(dim=-1) - pictures.amin(dim=-1)).mean(dim=(1, 2))[:, None]]
    for lag in (1, 2, 3, 4):
        features.append((brightness[:, lag:, :] - brightness[:, :-lag, :]).abs().mean(dim=(1, 2))[:, None])
        features.append((brightness[:, :, lag:] - brightness[:, :, :-lag]).abs().mean(dim=(1, 2))[:, None])
    return torch.cat(features, dim=1)


PROXIES = ("features", "pixels")


def projector(proxy: str, base: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """What a picture set is turned into before the projection. "pixels": the pictures.
    "features": `texture_features` in units of their spread over the base pictures (a
    colour that varies a lot from prompt to prompt weighs less than a texture that never
    does), averaged over the set (a style is a property of the set, as a judge's mean
    score is): one row."""
    if proxy == "pixels":
        return lambda pictures: pictures.float()
    if proxy != "features":
        raise HypernetError(f"unknown progress proxy {proxy!r}; valid names: {', '.join(PROXIES)}")
    features = texture_features(base)
    spread = features.std(dim=0) if features.shape[0] > 1 else torch.ones(features.shape[1])
    scale = spread.nan_to_num(1.0).clamp(min=1e-3)
    return lambda pictures: (texture_features(pictures) / scale).mean(dim=0, keepdim=True)


def make_monotone(progress: dict[float, float]) -> dict[float, float]:
    """Running maximum over increasing multipliers, clipped to [0, 1]; the first point
    (multiplier 0) is 0 and the last (1) is 1 by definition."""
    result, best = {}, 0.0
    keys = sorted(progress)
    for m in keys:
        best = min(1.0, max(best, progress[m]))
        result[m] = best
    result[keys[0]], result[keys[-1]] = 0.0, 1.0
    return result


def invert(monotone: dict[float, float], user_step: float = USER_STEP, decimals: int = 4) -> tuple[tuple[float, float], ...]:
    """The curve (user, internal) from (0, 0) to (1, 1): for each user multiplier on a
    `user_step` grid, the internal multiplier where the monotone progress first reaches
    it (linear interpolation); points that would not increase strictly are dropped."""
    xs = sorted(monotone)
    ys = [monotone[x] for x in xs]
    points = [(0.0, 0.0)]
    count = int(round(1 / user_step))
    for k in range(1, count):
        user = round(k / count, 6)
        j = next(j for j, y in enumerate(ys) if y >= user)  # ys[-1] = 1 > user
        x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
        internal = round(x0 + (user - y0) / (y1 - y0) * (x1 - x0), decimals)
        if points[-1][1] < internal < 1.0:
            points.append((user, internal))
    points.append((1.0, 1.0))
    return check_calibration(points)


def fit_calibration(measure: Callable[[float], torch.Tensor], grid: Sequence[float] = GRID,
                    user_step: float = USER_STEP, check: Sequence[float] = CHECK_MULTIPLIERS,
                    proxy: str = "features") -> Calibration:
    """Fit a curve from `measure(internal multiplier)`: the pictures (one tensor, a row
    per picture, same prompts and seeds every call) with the network at that internal
    multiplier. `grid` must start at 0 and end at 1; `check` user multipliers are
    re-measured through the fitted curve (the `after` table). `proxy` names what is
    projected (`projector`): "features" ((N, H, W, 3) pictures in [0, 1]) or "pixels"."""
    if proxy not in PROXIES:
        raise HypernetError(f"unknown progress proxy {proxy!r}; valid names: {', '.join(PROXIES)}")
    grid = sorted(float(m) for m in grid)
    if len(grid) < 2 or grid[0] != 0.0 or grid[-1] != 1.0:
        raise HypernetError(f"the measuring grid must run from 0 to 1, not {grid}")
    base = measure(grid[0])
    project = projector(proxy, base)
    pictures = {m: project(base if m == grid[0] else measure(m)) for m in grid}
    base, full = pictures[0.0], pictures[1.0]  # projected
    measured = {m: projection_progress(pictures[m], base, full) for m in grid}
    monotone = make_monotone(measured)
    curve = invert(monotone, user_step)
    after = {float(u): projection_progress(project(measure(effective_multiplier(curve, u))), base, full) for u in check}
    return Calibration(curve, measured, monotone, after)


@contextlib.contextmanager
def uncalibrated(network: Hypernetwork):
    """The network without its curve inside the block (multipliers are internal ones);
    the curve is put back on exit unless the block set a new one."""
    previous = network.metadata.multiplier_calibration
    network.metadata.multiplier_calibration = None
    try:
        yield network
    finally:
        if network.metadata.multiplier_calibration is None:
            network.metadata.multiplier_calibration = previous


def calibrate_network(generator, network: Hypernetwork, prompts: Sequence[str] = DEFAULT_PROMPTS,
                      seeds: int = 2, steps: int = 20, cfg: float = 7.0, size: tuple[int, int] | None = None,
                      progress: bool | Callable[[int], None] = True, grid: Sequence[float] = GRID,
                      user_step: float = USER_STEP, check: Sequence[float] = CHECK_MULTIPLIERS,
                      negative_prompt: str = "", sampler: str | None = None, proxy: str = "features") -> Calibration:
    """Fit `network`'s calibration curve on `generator` (a `Generator`, or a pipeline one
    is made for) and set it on the network (`network.metadata.multiplier_calibration`;
    saving is the caller's: `hypernet.formats.write_calibration` or `hypernet.save`).
    Each prompt is generated with seeds 0 .. `seeds`-1 at every multiplier of `grid` and
    of `check`; `progress` is True (a line with the time left on stderr), False, or a
    callable given the number of pictures done."""
    from .generation import Generator, Request

    prompts = [p for p in prompts if p.strip()]
    if not prompts or seeds < 1:
        raise HypernetError("calibration needs at least one prompt and one seed")
    owned = not isinstance(generator, Generator)
    generator = Generator(generator) if owned else generator
    total = len(prompts) * seeds * (len(grid) + len(check))
    if progress is True:
        from .xyz import ProgressLine

        progress = ProgressLine(total, "calibrate")
    width, height = size or (None, None)
    extra = {"sampler": sampler} if sampler else {}
    done = 0

    def measure(multiplier: float) -> torch.Tensor:
        nonlocal done
        rows = []
        for prompt in prompts:
            request = Request(prompt=prompt, negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg, seed=0,
                              width=width, height=height, batch_size=seeds, **extra)
            for result in generator.generate(request, networks=[(network, multiplier)], progress=False):
                rows.append(torch.from_numpy(np.asarray(result.image.convert("RGB"), dtype=np.float32) / 255.0))
                done += 1
                if progress:
                    progress(done)
        return torch.stack(rows)

    try:
        with uncalibrated(network):
            calibration = fit_calibration(measure, grid, user_step, check, proxy)
            network.metadata.multiplier_calibration = calibration.curve
    finally:
        if owned:
            generator.close()
    return calibration
