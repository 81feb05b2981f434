"""Reading the tensors of one checkpoint file, by its content (users rename files):
safetensors lazily, pickles through the safe unpickler. Old text-encoder key names are
seen under today's names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import HypernetFileError
from ..formats.detect import HEAD_BYTES, format_from_bytes
from .layout import SD1_TEXT_PREFIX_OLD, normalise_text_keys
from .safe_pickle import load_torch_file


class TensorFile:
    """The tensors of one checkpoint file, read lazily where the format allows."""

    def __init__(self, path: Path, keys: list[str], metadata: dict[str, str]):
        self.path = path
        self.keys = keys
        self.metadata = metadata
        self.aliases: dict[str, str] = {}  # today's key -> key as stored (old text encoder names)
        self.other_keys: list[str] = []  # top-level entries that are not tensors (pickles only)

    def stored(self, key: str) -> str:
        return self.aliases.get(key, key)

    def __contains__(self, key: str) -> bool:
        return key in self._key_set

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def tensor(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _index(self) -> None:
        self.aliases = normalise_text_keys(self.keys)
        if self.aliases:
            self.keys = [key for key in self.keys if not key.startswith(SD1_TEXT_PREFIX_OLD)] + list(self.aliases)
        self._key_set = set(self.keys)


class SafetensorsFile(TensorFile):
    def __init__(self, path: Path):
        from safetensors import SafetensorError, safe_open

        try:
            self._handle = safe_open(str(path), framework="pt", device="cpu")
            keys = list(self._handle.keys())
            metadata = dict(self._handle.metadata() or {})
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise HypernetFileError(
                path, f"not a readable .safetensors file, perhaps truncated or corrupt ({error})"
            ) from None
        super().__init__(path, keys, metadata)
        self._index()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(self.stored(key)).get_shape())

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self._handle.get_tensor(self.stored(key))
        except Exception as error:  # safetensors raises its own error types for damaged data
            raise HypernetFileError(self.path, f"cannot read this tensor ({error})", key=key) from None

    def close(self) -> None:
        self._handle = None


class PickleFile(TensorFile):
    def __init__(self, path: Path):
        loaded = load_torch_file(path)
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise HypernetFileError(path, f"holds a {type(loaded).__name__}, expected a dict of tensors")
        self._tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        others = [str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
        super().__init__(path, list(self._tensors), {})
        self.other_keys = others
        self._index()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[self.stored(key)].shape)

    def tensor(self, key: str) -> torch.Tensor:
        return self._tensors[self.stored(key)]

    def close(self) -> None:
        self._tensors = {}


def open_tensor_file(path: str | Path) -> TensorFile:
    """Opens a checkpoint by its content (users rename files), not by its extension."""
    path = Path(path)
    if not path.exists():
        raise HypernetFileError(path, "no such file: expected a .safetensors/.ckpt checkpoint or a diffusers folder")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise HypernetFileError(path, f"cannot be read ({error.strerror or error})") from None
    if size == 0:
        raise HypernetFileError(path, "is empty: expected a .safetensors or .ckpt checkpoint")
    found = format_from_bytes(head)
    if found == "pt":
        return PickleFile(path)
    if found == "safetensors":
        return SafetensorsFile(path)
    raise HypernetFileError(
        path, "is neither a .safetensors file nor a PyTorch (.ckpt/.pt) checkpoint; expected one of those"
    )
