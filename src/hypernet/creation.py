"""A new hypernetwork file in a library folder, as the webui's create form makes one
(contract §6): the one place the CLI, the HTTP API and the web UI create networks."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from .errors import HypernetError


def clean_name(name: str) -> str:
    """The webui keeps only alphanumerics and '._- ' in a new network's name."""
    cleaned = re.sub(r"[^\w.\- ]", "", name or "", flags=re.ASCII).strip()
    if not cleaned or cleaned.strip(".") == "":
        raise HypernetError(f"name {name!r} has no usable characters (letters, digits, '.', '_', '-', space)")
    return cleaned


def create_hypernetwork(name: str, folder, *, sizes: Sequence[int], layer_structure: Sequence[float] = (1, 2, 1),
                        activation: str = "linear", weight_init: str = "Normal", layer_norm: bool = False,
                        dropout_structure: Sequence[float] | None = None, activate_output: bool = False,
                        optional_info: str | None = None, file_format: str = "pt", overwrite: bool = False,
                        seed: int | None = None):
    """(path, network). `dropout_structure` None: no dropout. Refuses to replace an
    existing file unless `overwrite`; the file is written atomically."""
    from .formats import save
    from .network import Hypernetwork

    name = clean_name(name)
    if file_format not in ("pt", "safetensors"):
        raise HypernetError(f"format {file_format!r} must be pt or safetensors")
    target = Path(folder) / f"{name}.{file_format}"
    if target.exists() and not overwrite:
        raise HypernetError(f"{target} exists; overwrite it (overwrite_old / --overwrite) or choose another name")
    if not sizes:
        raise HypernetError("give at least one feature size (768, 320, 640, 1280; 1024 for SD2)")
    bad = [size for size in sizes if int(size) < 1]
    if bad:
        raise HypernetError(f"feature sizes must be positive whole numbers (got {bad})")
    odd = [value for value in (*layer_structure, *(dropout_structure or ())) if not math.isfinite(float(value))]
    if odd:
        raise HypernetError(f"layer and dropout structures must hold finite numbers (got {odd})")
    if dropout_structure is not None and len(dropout_structure) != len(layer_structure):
        raise HypernetError(f"the dropout structure has {len(dropout_structure)} entries but the layer structure has "
                            f"{len(layer_structure)}; give one per layer")
    network = Hypernetwork.create(sizes=[int(s) for s in sizes], layer_structure=layer_structure,
                                  activation=activation, weight_init=weight_init, layer_norm=layer_norm,
                                  dropout_structure=dropout_structure, activate_output=activate_output,
                                  name=name, optional_info=optional_info, generator_seed=seed)
    save(network, target)  # an atomic write: creates the folder, a failure names the file
    return target, network
