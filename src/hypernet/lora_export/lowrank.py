"""A delta matrix as LoRA factors `up @ down`, at a given rank or the smallest rank that
meets a relative error.

The truncation is the SVD in the metric of the layer's inputs: with `root` a square root
of their second moment (E[x xᵀ] = root rootᵀ), the kept rank-r delta minimises the
expected squared output error E‖(D - D_r) x‖² (reduced-rank regression: keep the leading
left singular vectors of D·root); with no root it is the plain SVD of D (isotropic
inputs). At full rank the factors are the exact SVD of D whatever the metric. Only SVDs
are taken (no eigendecomposition of D E[x xᵀ] Dᵀ, which would square the condition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import HypernetError


@dataclass
class Factors:
    up: torch.Tensor  # out_features × rank (float64)
    down: torch.Tensor  # rank × in_features (float64)
    error: float  # relative output error of up @ down against the delta (or the fitted target)

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def delta(self) -> torch.Tensor:
        return self.up @ self.down


def check_rank_request(rank: int | None, error: float | None) -> None:
    if rank is not None and error is not None:
        raise HypernetError("give a rank or a relative error, not both")
    if rank is not None and rank < 1:
        raise HypernetError(f"rank {rank} must be at least 1")
    if error is not None and not 0 <= error < 1:
        raise HypernetError(f"relative error {error} must be at least 0 and below 1 (e.g. 0.01)")


def _choose_rank(residuals: list[float], total: float, full: int, rank: int | None, error: float | None) -> int:
    """residuals[r] is the squared error left at rank r (r = 0 … full)."""
    if rank is not None:
        return min(rank, full)
    if error is None or total <= 0:
        return full
    for r in range(1, full + 1):
        if math.sqrt(max(residuals[r], 0.0) / total) <= error:
            return r
    return full


def _split(u: torch.Tensor, singular: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced factors: each side carries the square root of the singular values."""
    root = singular.clamp(min=0).sqrt()
    return u * root[None, :], root[:, None] * vh


def _exact(delta: torch.Tensor, total: float | None, root: torch.Tensor | None) -> Factors:
    """Full rank: the delta itself (error: what the delta leaves of `total`, if given)."""
    u, singular, vh = torch.linalg.svd(delta, full_matrices=False)
    up, down = _split(u, singular, vh)
    if total is None or total <= 0:
        return Factors(up, down, 0.0)
    explained = float((delta @ root.to(torch.float64)).square().sum()) if root is not None else float((singular**2).sum())
    return Factors(up, down, math.sqrt(max(total - explained, 0.0) / total))


def factorize(delta: torch.Tensor, rank: int | None = None, error: float | None = None,
              root: torch.Tensor | None = None, total: float | None = None) -> Factors:
    """`delta` (out × in) as rank-r factors. `total` is the squared size of what the delta
    stands for (a fitted delta's target outputs); by default the delta's own size."""
    delta = delta.to(torch.float64)
    full = min(delta.shape)
    if (rank is None and error is None) or (rank is not None and rank >= full):
        return _exact(delta, total, root)
    if root is None:
        u, singular, vh = torch.linalg.svd(delta, full_matrices=False)
    else:
        u, singular, _ = torch.linalg.svd(delta @ root.to(torch.float64), full_matrices=False)
        u, singular = u[:, :full], singular[:full]
    energies = singular**2
    explained = float(energies.sum())
    total = explained if total is None else float(total)
    base = max(total - explained, 0.0)
    tail = torch.flip(torch.cumsum(torch.flip(energies, [0]), 0), [0]).tolist() + [0.0]  # tail[r] = Σ_{i≥r}
    residuals = [base + value for value in tail]
    kept = max(1, _choose_rank(residuals, total, full, rank, error))
    relative = math.sqrt(residuals[kept] / total) if total > 0 else 0.0
    if kept >= full:
        return _exact(delta, total, root)
    if root is None:
        up, down = _split(u[:, :kept], singular[:kept], vh[:kept])
    else:
        basis = u[:, :kept]
        p, singular, qh = torch.linalg.svd(basis.T @ delta, full_matrices=False)
        up, down = _split(basis @ p, singular, qh)
    return Factors(up, down, relative)
