"""The optimizer side-car `<file>.optim` (contract §1.4).

It is honoured only when its `hash` equals the short sha256 of the hypernetwork file it
sits beside, so a stale side-car can never be applied to other weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import HypernetFileError
from ..fileio import short_hash
from .torchfile import read_torch_file, write_torch_file


@dataclass
class OptimizerState:
    optimizer_name: str
    state_dict: dict
    hash: str


def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".optim")


def write_optimizer_state(network_path, optimizer_name: str, state_dict: dict, file_hash: str | None = None) -> Path:
    """Write the side-car of a network file: hashed to the file already written there, or to
    `file_hash` (the short hash of the bytes about to be renamed into place)."""
    target = sidecar_path(network_path)
    write_torch_file(
        {"optimizer_name": optimizer_name, "hash": file_hash or short_hash(network_path), "optimizer_state_dict": state_dict},
        target,
    )
    return target


def read_optimizer_state(network_path) -> OptimizerState | None:
    """The side-car's content if it exists and belongs to this exact file, else None."""
    target = sidecar_path(network_path)
    if not target.exists():
        return None
    data = read_torch_file(target)
    if not isinstance(data, dict) or "optimizer_state_dict" not in data:
        raise HypernetFileError(target, "not an optimizer side-car (no 'optimizer_state_dict')", key="optimizer_state_dict")
    if data.get("hash") != short_hash(network_path):
        return None
    return OptimizerState(str(data.get("optimizer_name") or "AdamW"), data["optimizer_state_dict"], data["hash"])
