"""Hypernetwork files in and out: webui `.pt` (every layout in circulation) and the
package's `.safetensors` layout. The format is recognised by content, not by extension."""

from __future__ import annotations

from pathlib import Path

from ..errors import HypernetFileError
from ..network import Hypernetwork
from .calibration_key import write_calibration
from .detect import detect_format
from .optim import OptimizerState, read_optimizer_state, sidecar_path, write_optimizer_state
from .safetensors_layout import read_safetensors, write_safetensors
from .torchfile import read_torch_file, write_torch_file
from .webui import network_from_entries, network_to_dict, split_entries

FORMATS = ("pt", "safetensors")

__all__ = [
    "FORMATS",
    "OptimizerState",
    "detect_format",
    "load",
    "read_optimizer_state",
    "save",
    "sidecar_path",
    "write_calibration",
    "write_optimizer_state",
]


def load(path, multiplier: float = 1.0) -> Hypernetwork:
    """Load any hypernetwork file; errors name the file and the offending key."""
    path = Path(path)
    if detect_format(path) == "safetensors":
        modules, metadata = read_safetensors(path)
    else:
        data = read_torch_file(path)
        if not isinstance(data, dict):
            raise HypernetFileError(path, f"expected a dictionary of modules and metadata, found {type(data).__name__}")
        modules, metadata = split_entries(data, path)
    network = network_from_entries(modules, metadata, path, default_name=path.stem)
    network.multiplier = float(multiplier)
    network.source_path = path
    return network


def format_for_path(path, format: str | None = None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise HypernetFileError(path, f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
        return format
    return "safetensors" if str(path).endswith(".safetensors") else "pt"


def save(network: Hypernetwork, path, format: str | None = None, optimizer_name: str | None = None, optimizer_state: dict | None = None) -> Path:
    """Write atomically; `.pt` files load in stock webui v1.10.1 and ComfyUI. With an
    optimizer state, the `.optim` side-car is written after the file, hashed to it."""
    path = Path(path)
    if format_for_path(path, format) == "safetensors":
        write_safetensors(network, path)
    else:
        write_torch_file(network_to_dict(network), path)
    if optimizer_state is not None:
        write_optimizer_state(path, optimizer_name or "AdamW", optimizer_state)
    return path
