"""The starting noise of a picture, from its seed alone (CPU generator): the same seed
gives the same picture on any device and in any batch, and a variation seed is blended
in spherically, as the webui does."""

from __future__ import annotations

import torch


def seed_noise(request, seeds, shape) -> torch.Tensor:
    """[len(seeds), *shape]: each seed's noise, with `request`'s variation seed blended in."""
    noises = []
    for seed in seeds:
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
        if request.subseed_strength > 0:
            subseed = request.subseed + (seed - request.seed)
            other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed))
            noise = _slerp(request.subseed_strength, noise, other)
        noises.append(noise)
    return torch.stack(noises)


def _slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (keeps the noise's norm)."""
    low_unit = low / low.norm()
    high_unit = high / high.norm()
    dot = (low_unit * high_unit).sum().clamp(-1.0, 1.0)
    if dot.abs() > 0.9995:
        return (1 - strength) * low + strength * high
    omega = torch.acos(dot)
    return (torch.sin((1 - strength) * omega) * low + torch.sin(strength * omega) * high) / torch.sin(omega)
