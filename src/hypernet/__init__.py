"""hypernet: Stable Diffusion hypernetworks on diffusers.

Importing the package is cheap: torch-backed names are resolved on first use, so
``from hypernet import prompt`` works without torch.
"""

from __future__ import annotations

from .lazy import lazy_attributes

from .errors import HypernetConfigError, HypernetError, HypernetFileError, PromptError

__version__ = "0.1.0"

_LAZY = {
    "Hypernetwork": ("hypernet.network", "Hypernetwork"),
    "HypernetworkModule": ("hypernet.network", "HypernetworkModule"),
    "apply_chain": ("hypernet.network", "apply_chain"),
    "load": ("hypernet.formats", "load"),
    "save": ("hypernet.formats", "save"),
}

__all__ = [
    "HypernetError",
    "HypernetFileError",
    "HypernetConfigError",
    "PromptError",
    *_LAZY,
]


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
