"""LoRA files: the two key layouts this package writes, and reading a LoRA file's header
back (for `hypernet inspect`).

* `kohya`: `lora_unet_<module path, dots as underscores>.lora_down.weight` (rank × in),
  `.lora_up.weight` (out × rank) and `.alpha`: the layout kohya's sd-scripts write for
  SD 1.x/2.x and the AUTOMATIC1111 webui, Forge, ComfyUI, InvokeAI and diffusers'
  `load_lora_weights` read. A reader scales each module by alpha/rank. Every module gets
  the same alpha (the largest rank) and a lower-rank module's `lora_up` carries
  rank/alpha: diffusers ignores per-module alphas when they differ (peft's
  `alpha_pattern` keys do not match its module names), so only one alpha is safe.
* `diffusers`: `unet.<module path>.lora_A.weight` / `.lora_B.weight` (the peft layout
  diffusers saves), no alpha: peft's scale is 1 per module when the file names none.

Header metadata is strings only (safetensors): ours under `hypernet_*`, JSON-encoded where
structured; the kohya-style `ss_*` fields that front-ends show.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from ..errors import HypernetError, HypernetFileError
from ..fileio import atomic_path

FORMAT_KEY = "hypernet_lora_format_version"
FORMAT_VERSION = "1"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _kohya(module: str, up: torch.Tensor, down: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    key = "lora_unet_" + module.replace(".", "_")
    rank = down.shape[0]
    return {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up * (rank / alpha),
            f"{key}.alpha": torch.tensor(float(alpha))}


def _diffusers(module: str, up: torch.Tensor, down: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    return {f"unet.{module}.lora_A.weight": down, f"unet.{module}.lora_B.weight": up}


LAYOUTS: dict[str, Callable[[str, torch.Tensor, torch.Tensor, float], dict[str, torch.Tensor]]] = {
    "kohya": _kohya,
    "diffusers": _diffusers,
}


def layout_writer(name: str):
    if name not in LAYOUTS:
        raise HypernetError(f"unknown LoRA layout {name!r}; valid names: {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[name]


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise HypernetError(f"unknown dtype {name!r}; valid names: {', '.join(DTYPES)}")
    return DTYPES[name]


def lora_tensors(layout: str, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], dtype=torch.float32) -> dict:
    """{tensor key: tensor} for {module path (…attn1.to_k): (up, down)}."""
    write = layout_writer(layout)
    alpha = float(max((down.shape[0] for _, down in factors.values()), default=1))
    tensors = {}
    for module, (up, down) in factors.items():
        written = write(module, up, down, alpha)
        tensors.update({key: value.to(dtype if value.dim() else torch.float32).contiguous() for key, value in written.items()})
    return tensors


def check_output(path) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        raise HypernetError(f"{path}: a LoRA is written as .safetensors; name the file so")
    return path


def write_lora(path, tensors: dict, metadata: dict[str, str]) -> int:
    """Write atomically; returns the file's size in bytes."""
    from safetensors.torch import save_file

    path = check_output(path)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={**metadata, FORMAT_KEY: FORMAT_VERSION})
    return os.path.getsize(path)


def _layout_of(keys) -> str | None:
    keys = list(keys)
    if keys and all(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    if any(".lora_down." in k or ".lora_up." in k for k in keys):
        return "kohya-like"
    return None


def read_lora_header(path) -> tuple[dict[str, str], dict[str, list[int]]] | None:
    """(metadata, {key: shape}) of a safetensors LoRA file, or None when it is not one."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise HypernetFileError(path, f"not a readable safetensors file: {error}") from None
    if FORMAT_KEY not in metadata and _layout_of(shapes) is None:
        return None
    return metadata, shapes


def _decoded(value: str):
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def describe_lora(path) -> dict | None:
    """What a LoRA file holds, as JSON-able values; None when the file is not a LoRA."""
    header = read_lora_header(path)
    if header is None:
        return None
    metadata, shapes = header
    ranks = [shape[0] for key, shape in shapes.items() if key.endswith((".lora_down.weight", ".lora_A.weight"))]
    ours = {key[len("hypernet_"):]: _decoded(value) for key, value in metadata.items()
            if key.startswith("hypernet_") and key != FORMAT_KEY}
    return {
        "path": str(path),
        "kind": "lora",
        "layout": _layout_of(shapes) or "unknown",
        "modules": len(ranks),
        "ranks": sorted(set(ranks)),
        "tensors": len(shapes),
        "bytes_on_disk": os.path.getsize(path),
        "exported_by_hypernet": FORMAT_KEY in metadata,
        "export": ours,
        "other_metadata": {key: value for key, value in metadata.items() if not key.startswith("hypernet_")},
    }
