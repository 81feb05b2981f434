"""From a model path and a library folder to a ready `Generator`. Device and precision
follow the hardware: fp16 on CUDA, fp32 on CPUs (half-precision convolutions are ~200x
slower on CPUs without native support).

The generation layer knows no particular model: when the user names none, the caller's
`default_model` is used. The faces pass the embedded toy model's
(`hypernet.cli.defaults.toy_model_loader()`); a library user passes a path or their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .errors import HypernetConfigError
from .fileio import short_hash
from .generation import Generator, ModelInfo

PACKAGED_LIBRARY = Path(__file__).resolve().parent / "data" / "hypernetworks"


def pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: torch.dtype | None = None) -> torch.dtype:
    if dtype is not None:
        return dtype
    return torch.float16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class DefaultModel:
    """The model used when none is named: how to load it and what infotext calls it."""

    load: Callable[[torch.dtype], object]  # dtype -> a diffusers pipeline (moved to the device by the caller)
    info: Callable[[], ModelInfo]


def _default(default_model: DefaultModel | None) -> DefaultModel:
    if default_model is None:
        raise HypernetConfigError(
            "no model given: pass a checkpoint path or diffusers folder, or default_model= "
            "(hypernet.cli.defaults.toy_model_loader() for the embedded toy model)"
        )
    return default_model


def model_info(model, default_model: DefaultModel | None = None) -> ModelInfo:
    """The webui's `Model` (file stem) and `Model hash` (short sha256 of the file)."""
    if model is None:
        return _default(default_model).info()
    path = Path(model)
    if path.is_dir():
        weights = next(iter(sorted((path / "unet").glob("*.safetensors"))), None)
        return ModelInfo(name=path.name, hash=short_hash(weights) if weights else None)
    return ModelInfo(name=path.stem, hash=short_hash(path))


def load_pipeline_for(model, family=None, device=None, dtype=None, progress: bool = True,
                      default_model: DefaultModel | None = None):
    """The pipeline of `model` (a checkpoint file or diffusers folder; None: `default_model`)."""
    from .quiet import resolve_image_processors_quietly

    resolve_image_processors_quietly()
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    if model is None:
        return _default(default_model).load(dtype).to(device)
    from .models.checkpoint import load_pipeline

    return load_pipeline(model, family=family, dtype=dtype, device=device, progress=progress)


def open_library(hypernet_dir, include_packaged: bool = True):
    from .library import Library

    extra = [PACKAGED_LIBRARY] if include_packaged and PACKAGED_LIBRARY.is_dir() else []
    return Library(hypernet_dir, extra_roots=extra)


def load_generator(model=None, hypernet_dir="models/hypernetworks", family=None, device=None, dtype=None,
                   progress: bool = True, lora_dir="models/Lora", embeddings_dir="models/embeddings",
                   default_model: DefaultModel | None = None, fold: bool = True, memory_limit=None) -> Generator:
    """A Generator for `model` (None: `default_model`) and the library folders;
    `memory_limit` (a `hypernet.memory.MemoryLimit`) bounds what one request may need;
    `fold=False` runs linear hypernetworks as MLPs (`hypernet.folding`)."""
    default_model = None if model is not None else _default(default_model)
    pipe = load_pipeline_for(model, family=family, device=device, dtype=dtype, progress=progress,
                             default_model=default_model)
    return Generator(pipe, library=open_library(hypernet_dir), model=model_info(model, default_model),
                     lora_dir=lora_dir, embeddings_dir=embeddings_dir, fold=fold, memory_limit=memory_limit)
