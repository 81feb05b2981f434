"""The `.safetensors` hypernetwork layout this package defines (docs/formats.md).

Tensors: `<size>.k.<state-dict key>` and `<size>.v.<state-dict key>`, e.g.
`768.k.linear.0.weight`. Header metadata (strings only, as safetensors requires):
`format` = "hypernet", `format_version` = "1", `sizes` = JSON list in the file's order,
and every webui metadata key (§1.2) JSON-encoded under its own name, so `null`, numbers
and lists survive exactly, as is the package's own `multiplier_calibration` (when set);
unknown JSON-able keys go under `extra`.
"""

from __future__ import annotations

import json
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import HypernetFileError, short_repr
from ..fileio import atomic_path
from .webui import KNOWN_KEYS, size_key, metadata_to_dict, module_states

FORMAT_NAME = "hypernet"
FORMAT_VERSION = "1"
_SIDES = {"k": 0, "v": 1}


def read_safetensors(path) -> tuple[dict[int, tuple[dict, dict]], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise HypernetFileError(path, f"not a readable safetensors file (truncated or corrupt?): {error}") from None
    if header.get("format") != FORMAT_NAME:
        raise HypernetFileError(
            path,
            f"this safetensors file is not a hypernetwork (header format {header.get('format')!r}, expected "
            f"{FORMAT_NAME!r}); LoRA and checkpoint files are loaded elsewhere",
            key="format",
        )
    metadata: dict[str, Any] = {}
    for key, text in header.items():
        if key in KNOWN_KEYS or key in ("sizes", "extra"):
            try:
                metadata[key] = json.loads(text)
            except ValueError:  # not JSON, or a number too long to read
                raise HypernetFileError(path, f"header value {short_repr(text)} is not valid JSON", key=key) from None
    extra = metadata.pop("extra", {}) or {}
    order = metadata.pop("sizes", None)
    modules: dict[int, tuple[dict, dict]] = {}
    for key, tensor in tensors.items():
        size_text, _, rest = key.partition(".")
        side, _, name = rest.partition(".")
        if not size_text.isdigit() or side not in _SIDES or not name:
            raise HypernetFileError(path, "tensor name must look like '768.k.linear.0.weight'", key=key if len(key) <= 60 else key[:57] + "...")
        modules.setdefault(size_key(path, size_text), ({}, {}))[_SIDES[side]][name] = tensor
    if isinstance(order, list) and all(type(size) is int for size in order) and sorted(order) == sorted(modules):
        modules = {size: modules[size] for size in order}
    return modules, {**extra, **metadata}


def write_safetensors(network, path) -> None:
    tensors = {}
    for size, states in module_states(network).items():
        for side, index in _SIDES.items():
            for name, tensor in states[index].items():
                tensors[f"{size}.{side}.{name}"] = tensor
    metadata = metadata_to_dict(network)
    extra = {}
    for key in list(metadata):
        if key not in KNOWN_KEYS:
            value = metadata.pop(key)
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue  # not representable as text; documented as dropped
            extra[key] = value
    header = {key: json.dumps(value) for key, value in metadata.items()}
    header.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, sizes=json.dumps(network.sizes))
    if extra:
        header["extra"] = json.dumps(extra)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=header)
