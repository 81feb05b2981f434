"""From a model path (or none: the embedded toy model) and a library folder to a ready
`Generator`. Device and precision follow the hardware: fp16 on CUDA, fp32 on CPUs
(half-precision convolutions are ~200x slower on CPUs without native support)."""

from __future__ import annotations

from pathlib import Path

import torch

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


def model_info(model) -> ModelInfo:
    """The webui's `Model` (file stem) and `Model hash` (short sha256 of the file)."""
    if model is None:
        from .toy.model import shipped_model_folder

        unet = next(iter(sorted((shipped_model_folder() / "unet").glob("*.safetensors"))), None)
        return ModelInfo(name="hypernet-toy", hash=short_hash(unet) if unet else None)
    path = Path(model)
    if path.is_dir():
        weights = next(iter(sorted((path / "unet").glob("*.safetensors"))), None)
        return ModelInfo(name=path.name, hash=short_hash(weights) if weights else None)
    return ModelInfo(name=path.stem, hash=short_hash(path))


def load_pipeline_for(model, family=None, device=None, dtype=None, progress: bool = True):
    from .quiet import resolve_image_processors_quietly

    resolve_image_processors_quietly()
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    if model is None:
        from .toy.model import load_toy_pipeline

        return load_toy_pipeline(dtype=dtype).to(device)
    from .models.checkpoint import load_pipeline

    return load_pipeline(model, family=family, dtype=dtype, device=device, progress=progress)


def open_library(hypernet_dir, include_packaged: bool = True):
    from .library import Library

    extra = [PACKAGED_LIBRARY] if include_packaged and PACKAGED_LIBRARY.is_dir() else []
    return Library(hypernet_dir, extra_roots=extra)


def load_generator(model=None, hypernet_dir="models/hypernetworks", family=None, device=None, dtype=None,
                   progress: bool = True, lora_dir="models/Lora", embeddings_dir="models/embeddings") -> Generator:
    """A Generator for `model` (None: the embedded toy model) and the library folders."""
    pipe = load_pipeline_for(model, family=family, device=device, dtype=dtype, progress=progress)
    return Generator(pipe, library=open_library(hypernet_dir), model=model_info(model),
                     lora_dir=lora_dir, embeddings_dir=embeddings_dir)
