"""Checkpoints that cannot be lost and can be resumed exactly.

A checkpoint is three files, each written atomically (a temporary file renamed over the
target, so a reader sees the old file or the complete new one, never a torn one):

* `<name>-<step>.pt` - the hypernetwork (loads in the stock webui), `step` = the number in
  the file name (the webui's is one less);
* `<file>.optim` - the optimizer state, hashed to *that* file (the webui hashed the
  intermediate checkpoints' side-cars to the source file, so they never matched);
* `<file>.train.json` - where the run stood: step, micro-batches consumed, seed, the
  loss scaler, and what the data stream depends on. It is plain JSON: every random draw
  of a run derives from (seed, position), so no RNG state needs to be pickled.

The network is written first and the side-cars after it; a side-car whose hash does not
match its network is ignored on resume (reported), so a crash between the writes leaves
a loadable network and, at worst, a resume that says it cannot be exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import HypernetFileError
from ..fileio import atomic_path, read_json_object, short_hash
from ..formats import OptimizerState, read_optimizer_state, save, sidecar_path
from ..network import Hypernetwork

STATE_FORMAT = "hypernet-training-state"
STATE_VERSION = 1
STATE_SUFFIX = ".train.json"


def state_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + STATE_SUFFIX)


def _cpu_copy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cpu_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_cpu_copy(item) for item in value)
    return value


def portable(optimizer_state: dict) -> dict:
    """A CPU copy of an optimizer state without the kernel choice (`fused`, `foreach`), so
    the side-car loads into a plain `torch.optim.AdamW` anywhere (the webui included)."""
    state = _cpu_copy(optimizer_state)
    state["param_groups"] = [{k: v for k, v in group.items() if k not in ("fused", "foreach")}
                             for group in state["param_groups"]]
    return state


def save_checkpoint(network: Hypernetwork, path, optimizer: torch.optim.Optimizer | None = None,
                    state: dict | None = None) -> Path:
    """Network, then its optimizer side-car, then its training-state side-car."""
    path = Path(path)
    optimizer_state = portable(optimizer.state_dict()) if optimizer is not None else None
    save(network, path, optimizer_name=type(optimizer).__name__ if optimizer is not None else None,
         optimizer_state=optimizer_state)
    if state is not None:
        write_state(path, state)
    return path


def write_state(network_path, state: dict) -> Path:
    target = state_path(network_path)
    data = {"format": STATE_FORMAT, "version": STATE_VERSION, "hash": short_hash(network_path), **state}
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def read_state(network_path) -> tuple[dict | None, str | None]:
    """(state, None) when the side-car belongs to this exact file, else (None, why not)."""
    target = state_path(network_path)
    if not target.exists():
        return None, f"no training-state side-car {target.name}"
    try:
        data = read_json_object(target)
    except HypernetFileError as error:
        return None, f"{target.name} cannot be read ({error.reason})"
    if data.get("format") != STATE_FORMAT:
        return None, f"{target.name} is not a training-state side-car"
    if data.get("version") != STATE_VERSION:
        return None, f"{target.name} has version {data.get('version')!r}; this trainer reads version {STATE_VERSION}"
    if data.get("hash") != short_hash(network_path):
        return None, f"{target.name} belongs to another version of {Path(network_path).name} (hash differs)"
    return data, None


@dataclass
class ResumePoint:
    """What a file offers to continue training from."""

    path: Path
    network: Hypernetwork
    optimizer: OptimizerState | None
    state: dict | None
    notes: list[str] = field(default_factory=list)  # why something could not be restored

    @property
    def exact(self) -> bool:
        return self.optimizer is not None and self.state is not None


def read_resume_point(path, network: Hypernetwork | None = None) -> ResumePoint:
    """The network stored at `path` (or `network`, already loaded from it) with the side-cars
    that belong to it."""
    from ..formats import load

    path = Path(path)
    if network is None:
        network = load(path)
    notes = []
    try:
        optimizer = read_optimizer_state(path)
    except HypernetFileError as error:
        optimizer, notes = None, [str(error)]
    if optimizer is None and not notes:
        side = sidecar_path(path)
        notes.append(f"{side.name} belongs to another version of {path.name} (hash differs)" if side.exists()
                     else f"no optimizer side-car {side.name}")
    state, why = read_state(path)
    if why:
        notes.append(why)
    return ResumePoint(path, network, optimizer, state, notes)


def checkpoint_name(name: str, step: int, suffix: str = ".pt") -> str:
    return f"{name}-{step}{suffix}"
