"""The checkpoints a server can switch between: the model it started with (the embedded
toy model by default) and every file or diffusers folder in `models/Stable-diffusion`,
named as the webui names them (`title` = "file.safetensors [shorthash]").

Hashes of multi-GB files take seconds, so a file's hash is computed when it is loaded
(or asked for) and kept per file version, never during a listing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import HypernetError
from ..fileio import sha256

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
TOY_TITLE = "hypernet-toy"


class UnknownCheckpointError(HypernetError):
    """No checkpoint answers to the name; the message lists those there are."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path | None  # None: the embedded toy model
    name: str  # relative file name ("sub/model.safetensors"), or the toy title
    model_name: str  # the stem, as the webui's `model_name`

    @property
    def title(self) -> str:
        return self.name


class Checkpoints:
    def __init__(self, folder: Path, default=None):
        self.folder = Path(folder)
        if default is None:
            self.default = Checkpoint(None, TOY_TITLE, TOY_TITLE)
        else:
            path = Path(default)
            if not path.exists():
                raise HypernetError(f"model {path} does not exist; give a .safetensors/.ckpt file or a diffusers folder")
            self.default = Checkpoint(path, path.name, path.stem if path.is_file() else path.name)
        self._hashes: dict[Path, tuple[tuple, str]] = {}
        self._lock = threading.Lock()

    def list(self) -> list[Checkpoint]:
        found = [self.default]
        if self.folder.is_dir():
            paths = sorted(self.folder.rglob("*"), key=lambda p: str(p).lower())
            # a diffusers folder is one checkpoint: its component weight files are not
            pipelines = [p for p in paths if p.is_dir() and (p / "model_index.json").is_file()]
            for path in paths:
                relative = path.relative_to(self.folder).as_posix()
                if any(folder in path.parents for folder in pipelines):
                    continue
                if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
                    found.append(Checkpoint(path, relative, path.stem))
                elif path.is_dir() and (path / "model_index.json").is_file():
                    found.append(Checkpoint(path, relative, path.name))
        unique, seen = [], set()
        for checkpoint in found:
            key = checkpoint.path.resolve() if checkpoint.path else None
            if key not in seen:
                seen.add(key)
                unique.append(checkpoint)
        return unique

    def resolve(self, name: str) -> Checkpoint:
        """By title, title with its " [hash]" suffix, relative name, or stem."""
        query = (name or "").strip()
        if " [" in query and query.endswith("]"):
            query = query[: query.rindex(" [")]
        listed = self.list()
        for field in ("name", "model_name"):
            matches = [c for c in listed if getattr(c, field) == query]
            if matches:
                return matches[0]
        titles = ", ".join(c.title for c in listed)
        raise UnknownCheckpointError(f"no checkpoint named {name!r}; available: {titles} "
                                     f"(files go in {self.folder})")

    def sha256(self, checkpoint: Checkpoint, compute: bool = False) -> str | None:
        """The full sha256 of a single-file checkpoint; cached per file version."""
        path = checkpoint.path
        if path is None or not path.is_file():
            return None
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._hashes.get(path)
        if cached and cached[0] == key:
            return cached[1]
        if not compute:
            return None
        value = sha256(path)
        with self._lock:
            self._hashes[path] = (key, value)
        return value
