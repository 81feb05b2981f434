"""Checkpoints that cannot be lost and can be resumed exactly.

A checkpoint is three files:

* `<name>-<step>.pt` - the hypernetwork (loads in the stock webui), `step` = the number in
  the file name (the webui's is one less);
* `<file>.optim` - the optimizer state, hashed to *that* file (the webui hashed the
  intermediate checkpoints' side-cars to the source file, so they never matched);
* `<file>.train.json` - where the run stood: step, micro-batches consumed, seed, the
  loss scaler, and what the data stream depends on. It is plain JSON: every random draw
  of a run derives from (seed, position), so no RNG state needs to be pickled.

Each is written atomically (a temporary file renamed over the target). The network is
written to its temporary first, the side-cars are written hashed to those bytes, and the
network is renamed into place last: a visible checkpoint always has its side-cars, and a
kill before that rename leaves the previous file (its side-cars, if already replaced, then
no longer match it and are ignored on resume, with the reason said). Non-finite weights
are never written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import HypernetFileError
from ..fileio import atomic_path, read_json_object, short_hash
from ..formats import OptimizerState, format_for_path, read_optimizer_state, save, sidecar_path, write_optimizer_state
from ..network import Hypernetwork

STATE_FORMAT = "hypernet-training-state"
STATE_VERSION = 1
STATE_SUFFIX = ".train.json"


def state_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + STATE_SUFFIX)


def cpu_copy(value):
    """A copy of a (nested) state dict with every tensor on the CPU, shared with nothing."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cpu_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(cpu_copy(item) for item in value)
    return value


def portable(optimizer_state: dict) -> dict:
    """A CPU copy of an optimizer state without the kernel choice (`fused`, `foreach`), so
    the side-car loads into a plain `torch.optim.AdamW` anywhere (the webui included)."""
    state = cpu_copy(optimizer_state)
    state["param_groups"] = [{k: v for k, v in group.items() if k not in ("fused", "foreach")}
                             for group in state["param_groups"]]
    return state


def finite(network: Hypernetwork) -> bool:
    """Whether every weight is a finite number (a diverged run's are not)."""
    return all(bool(torch.isfinite(value).all()) for value in network.state_dict().values() if value.is_floating_point())


def save_checkpoint(network: Hypernetwork, path, optimizer: torch.optim.Optimizer | OptimizerState | None = None,
                    state: dict | None = None) -> Path:
    """Side-cars first, hashed to the network's bytes, then the network renamed into place.
    `optimizer`: a live optimizer, or an `OptimizerState` read from another checkpoint."""
    path = Path(path)
    if not finite(network):
        raise HypernetFileError(path, "not written: the network's weights are not finite numbers")
    if isinstance(optimizer, OptimizerState):
        optimizer_name, optimizer_state = optimizer.optimizer_name, optimizer.state_dict
    elif optimizer is not None:
        optimizer_name, optimizer_state = type(optimizer).__name__, portable(optimizer.state_dict())
    try:
        with atomic_path(path) as temporary:
            save(network, temporary, format=format_for_path(path))
            digest = short_hash(temporary)
            if optimizer is not None:
                write_optimizer_state(path, optimizer_name, optimizer_state, file_hash=digest)
            if state is not None:
                write_state(path, state, file_hash=digest)
    except OSError as error:
        raise HypernetFileError(path, f"cannot be written ({error.strerror or error})") from None
    return path


def write_state(network_path, state: dict, file_hash: str | None = None) -> Path:
    target = state_path(network_path)
    state = {key: value for key, value in state.items() if key not in ("format", "version", "hash")}
    data = {"format": STATE_FORMAT, "version": STATE_VERSION, "hash": file_hash or short_hash(network_path), **state}
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
