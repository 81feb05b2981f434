"""Writing or removing a file's calibration curve (`multiplier_calibration`) without
touching anything else: tensors keep their bytes and dtypes, every other key stays as
the file had it, and the write is atomic. A matching `.optim` side-car is re-hashed to
the new file, so training can still resume with its optimizer state."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import HypernetFileError
from ..fileio import atomic_path
from ..multipliers import CALIBRATION_KEY, check_calibration
from .detect import detect_format
from .optim import read_optimizer_state, sidecar_path, write_optimizer_state
from .torchfile import read_torch_file, torch_bytes_for_webui


def write_calibration(source, curve, target=None) -> Path:
    """Copy `source` to `target` (default: over `source`) with `curve` as its calibration
    curve, or without one when `curve` is None. Returns the path written."""
    source = Path(source)
    target = Path(target) if target is not None else source
    value = None if curve is None else [[float(u), float(i)] for u, i in check_calibration(curve)]
    optimizer = read_optimizer_state(source) if sidecar_path(source).exists() else None
    if detect_format(source) == "safetensors":
        try:
            with safe_open(str(source), framework="pt", device="cpu") as handle:
                header = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types
            raise HypernetFileError(source, f"not a readable safetensors file ({error})") from None
        header.pop(CALIBRATION_KEY, None)
        if value is not None:
            header[CALIBRATION_KEY] = json.dumps(value)
        with atomic_path(target) as temporary:
            save_file(tensors, str(temporary), metadata=header)
    else:
        data = read_torch_file(source)
        if not isinstance(data, dict):
            raise HypernetFileError(source, f"expected a dictionary of modules and metadata, found {type(data).__name__}")
        data.pop(CALIBRATION_KEY, None)
        if value is not None:
            data[CALIBRATION_KEY] = value
        packed = torch_bytes_for_webui(data)
        with atomic_path(target) as temporary:
            temporary.write_bytes(packed)
    if optimizer is not None and target == source:
        write_optimizer_state(target, optimizer.optimizer_name, optimizer.state_dict)
    return target
