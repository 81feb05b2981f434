"""Calibrated multipliers: a curve of (user multiplier, internal multiplier) points that
a file may carry (`multiplier_calibration`, docs/generation.md "Calibrated multipliers"),
so that a user's 0.5 means "half-way to the style" rather than the raw MLP scale.
Plain Python: the network layer uses it, the file layer checks files with it."""

from __future__ import annotations

import math
from typing import Sequence

from .errors import HypernetConfigError, short_repr

CALIBRATION_KEY = "multiplier_calibration"  # the metadata key in .pt and .safetensors files

CALIBRATION_MAX_POINTS = 1000


def check_calibration(points) -> tuple[tuple[float, float], ...]:
    """A calibration curve as a tuple of float pairs, or `HypernetConfigError` saying
    what is wrong: at least two (user, internal) points, from (0, 0) to (1, 1), finite
    and strictly increasing in both."""
    example = "e.g. [[0, 0], [0.5, 0.8], [1, 1]]"
    if not isinstance(points, (list, tuple)) or not 2 <= len(points) <= CALIBRATION_MAX_POINTS:
        raise HypernetConfigError(f"a calibration curve is a list of 2 to {CALIBRATION_MAX_POINTS} "
                                  f"[user, internal] pairs, {example}, not {short_repr(points)}")
    curve = []
    for point in points:
        if (not isinstance(point, (list, tuple)) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)):
            raise HypernetConfigError(f"calibration point {short_repr(point)} must be a [user, internal] pair of numbers, {example}")
        user, internal = float(point[0]), float(point[1])
        if not (math.isfinite(user) and math.isfinite(internal)):
            raise HypernetConfigError(f"calibration point {short_repr(point)} must hold finite numbers")
        curve.append((user, internal))
    if curve[0] != (0.0, 0.0) or curve[-1] != (1.0, 1.0):
        raise HypernetConfigError(f"a calibration curve must start at [0, 0] and end at [1, 1], {example}")
    for (u0, i0), (u1, i1) in zip(curve, curve[1:]):
        if not (u1 > u0 and i1 > i0):
            raise HypernetConfigError(f"calibration points [{u0:g}, {i0:g}] then [{u1:g}, {i1:g}] are not strictly "
                                      "increasing in both values")
    return tuple(curve)


def effective_multiplier(curve: Sequence[tuple[float, float]] | None, multiplier: float) -> float:
    """`multiplier` through `curve`: 0 stays exactly 0.0; (0, 1] interpolates the curve
    linearly; beyond 1 is the identity (continuous: the curve ends at (1, 1)); a negative
    multiplier is the mirror image; no curve changes nothing."""
    multiplier = float(multiplier)
    if not curve or not math.isfinite(multiplier):
        return multiplier
    if multiplier == 0:
        return 0.0
    if multiplier < 0:
        return -effective_multiplier(curve, -multiplier)
    if multiplier >= 1:
        return multiplier
    for (u0, i0), (u1, i1) in zip(curve, curve[1:]):
        if multiplier <= u1:
            return i0 + (i1 - i0) * (multiplier - u0) / (u1 - u0)
    return multiplier  # not reached: the curve ends at 1
