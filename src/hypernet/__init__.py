"""hypernet: Stable Diffusion hypernetworks on diffusers.

Importing the package is cheap: torch-backed names are resolved on first use, so
``from hypernet import prompt`` works without torch.
"""

from __future__ import annotations

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


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hypernet' has no attribute {name!r}")
