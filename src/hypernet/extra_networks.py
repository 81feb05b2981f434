"""The other networks a webui prompt names: LoRA (`<lora:NAME:M>`) and textual-inversion
embeddings (written by their file name in the prompt).

Files are untrusted data: pickles load only with `torch.load(weights_only=True)`.
LoRA files are applied through diffusers/peft adapters, loaded on first use and switched
per call by a context manager; with no LoRA (or weight 0) the adapters are disabled, so
the output is bit-identical to a pipeline that never saw them.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import HypernetError, HypernetFileError
from .library.scan import walk_folder

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
EMBEDDING_SUFFIXES = (".pt", ".safetensors", ".bin")


def read_tensors(path: Path) -> dict:
    """A file's top-level dictionary, as data only."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise HypernetFileError(path, f"not a readable safetensors file: {error}") from None
    from .formats.torchfile import read_torch_file

    data = read_torch_file(path)
    if not isinstance(data, dict):
        raise HypernetFileError(path, f"expected a dictionary of tensors, found {type(data).__name__}")
    return data


def _files(root: Path | None, suffixes) -> dict[str, Path]:
    """{name: file}: a file is named by its stem, as a prompt writes it; of two files with
    one stem, the first by lower-cased path wins."""
    if root is None or not Path(root).is_dir():
        return {}
    paths = [Path(directory) / name for directory, names in walk_folder(Path(root)) for name in names]
    found = {}
    for path in sorted(paths, key=lambda p: str(p).lower()):
        if path.suffix.lower() in suffixes and path.is_file():
            found.setdefault(path.stem, path)
    return found


def _unknown(kind: str, name: str, names) -> HypernetError:
    from .prompt import closest_names

    close = closest_names(name, names)
    hint = f"; closest: {', '.join(close)}" if close else ("" if names else f"; the {kind} folder is empty")
    return HypernetError(f"unknown {kind} {name!r}{hint}")


# -- LoRA ------------------------------------------------------------------------------


@dataclass
class LoraSet:
    """LoRA files of one folder, as adapters of one pipeline."""

    pipe: object
    root: Path | None
    _adapters: dict = field(default_factory=dict)  # name -> adapter name in peft

    def names(self) -> list[str]:
        return sorted(_files(self.root, LORA_SUFFIXES))

    def _adapter(self, name: str) -> str:
        if name in self._adapters:
            return self._adapters[name]
        files = _files(self.root, LORA_SUFFIXES)
        if name not in files:
            raise _unknown("LoRA", name, list(files))
        path = files[name]
        adapter = f"lora_{len(self._adapters)}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"
        try:
            self.pipe.load_lora_weights(read_tensors(path), adapter_name=adapter)
        except (ValueError, KeyError, RuntimeError) as error:
            raise HypernetFileError(path, f"not a LoRA this model can use: {str(error).splitlines()[0][:300]}") from None
        self._adapters[name] = adapter
        return adapter

    @contextlib.contextmanager
    def activate(self, weights: list[tuple[str, float]]):
        """Apply these (name, weight) LoRAs inside the block; none outside it."""
        active = [(self._adapter(name), weight) for name, weight in weights if weight != 0]
        try:
            if active:
                self.pipe.enable_lora()
                self.pipe.set_adapters([a for a, _ in active], adapter_weights=[w for _, w in active])
            elif self._adapters:
                self.pipe.disable_lora()
            yield
        finally:
            if self._adapters:
                self.pipe.disable_lora()


# -- embeddings ------------------------------------------------------------------------


def embedding_vectors(path: Path) -> torch.Tensor:
    """[vectors, width] from a webui `.pt`, an A1111/kohya `.safetensors` or a diffusers `.bin`."""
    data = read_tensors(path)
    if "string_to_param" in data:  # webui .pt
        params = data["string_to_param"]
        if not isinstance(params, dict) or not params:
            raise HypernetFileError(path, "'string_to_param' holds no vectors", key="string_to_param")
        vectors = next(iter(params.values()))
    elif "emb_params" in data:  # webui / kohya .safetensors
        vectors = data["emb_params"]
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):  # diffusers learned_embeds.bin
        vectors = next(iter(data.values()))
    else:
        keys = ", ".join(map(str, list(data)[:5]))
        raise HypernetFileError(path, f"not a textual-inversion embedding (keys: {keys}); expected 'string_to_param' or 'emb_params'")
    if not isinstance(vectors, torch.Tensor) or not vectors.is_floating_point():
        raise HypernetFileError(path, "embedding vectors are not a floating-point tensor")
    vectors = vectors.detach().to(torch.float32)
    return vectors.unsqueeze(0) if vectors.dim() == 1 else vectors


def load_embeddings(root, width: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """({name: vectors} usable with a text encoder of `width`, [warnings])."""
    embeddings, warnings = {}, []
    for name, path in _files(root, EMBEDDING_SUFFIXES).items():
        try:
            vectors = embedding_vectors(path)
        except HypernetError as error:
            warnings.append(str(error))
            continue
        if vectors.shape[-1] != width:
            warnings.append(f"{path}: embedding width {vectors.shape[-1]} does not fit this model's text encoder ({width}); skipped")
            continue
        embeddings[name] = vectors
    return embeddings, warnings
