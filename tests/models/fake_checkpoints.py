"""Cheap stand-ins for real checkpoints: the original key layout, random fp16 values.

A full-size SD checkpoint is ~1 billion numbers; generating that many random values
would dominate the test time. The writer streams tensors out of one shared pool of
random fp16 values (each key starting at its own offset, so no two tensors are equal)
straight into the safetensors format: header JSON, then raw little-endian bytes. Tensors
not named in ``filled`` are left as holes of a sparse file (they read as zeros), so a
2 GB checkpoint costs a few MB of writing and no disk space.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

POOL_ELEMENTS = 64 * 1024 * 1024


def random_pool(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(POOL_ELEMENTS, generator=generator, dtype=torch.float32).to(torch.float16)


def _offset(key: str, count: int) -> int:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return digest % (POOL_ELEMENTS - count + 1)


def write_fake_safetensors(
    path: Path, shapes: dict[str, tuple[int, ...]], pool: torch.Tensor, metadata=None, filled=None
) -> Path:
    """Writes fp16 tensors of the given shapes, values from ``pool`` (only ``filled`` keys, if given)."""
    header: dict = {}
    position = 0
    for key, shape in shapes.items():
        size = math.prod(shape) * 2
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [position, position + size]}
        position += size
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    raw = pool.view(torch.uint8).numpy()
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for key, shape in shapes.items():
            count = math.prod(shape)
            if filled is not None and key not in filled:
                handle.seek(2 * count, 1)
                continue
            start = _offset(key, count)
            handle.write(memoryview(raw[2 * start : 2 * (start + count)]))
        handle.truncate()
    return path


def expected_tensor(key: str, shape: tuple[int, ...], pool: torch.Tensor) -> torch.Tensor:
    """What ``write_fake_safetensors`` stored under ``key``."""
    count = math.prod(shape)
    start = _offset(key, count)
    return pool[start : start + count].reshape(shape)
