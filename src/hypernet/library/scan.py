"""Scanning a library folder: the hypernetwork files below it and their side-cars
(preview picture, description, the webui editor's user metadata)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import HypernetFileError
from ..fileio import read_json_object

DEFAULT_ROOT = "models/hypernetworks"
# File extension -> format name, as `hypernet.formats` spells it.
HYPERNETWORK_EXTENSIONS = {".pt": "pt", ".safetensors": "safetensors"}
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
DESCRIPTION_SUFFIXES = (".txt", ".description.txt")
USER_METADATA_SUFFIX = ".json"
# The webui's placeholder entry "None" is never a file name it lists.
EXCLUDED_STEMS = frozenset({"None"})


@dataclass(frozen=True)
class LibraryEntry:
    """One hypernetwork file and its side-cars, as found by the last scan."""

    name: str  # base name without extension: what `<hypernet:NAME>` means in the webui
    path: Path
    relative_name: str  # posix path below its root, without extension ("sub/name")
    format: str  # "pt" or "safetensors", from the extension (the loader checks content)
    preview: Path | None
    description: str | None
    user_metadata: dict = field(default_factory=dict)
    mtime: float = 0.0
    size_bytes: int = 0
    root: Path | None = None

    @property
    def extension(self) -> str:
        return "." + self.path.name.rpartition(".")[2]

    @property
    def relative_file(self) -> str:
        """The relative name with the extension: tells `a.pt` from `a.safetensors`."""
        return self.relative_name + self.extension

    @property
    def stem_path(self) -> Path:
        """The path without its extension, to which side-car suffixes are appended."""
        return self.path.with_name(self.name)

    @property
    def user_metadata_path(self) -> Path:
        return self.path.with_name(self.name + USER_METADATA_SUFFIX)


@dataclass(frozen=True)
class LibraryWarning:
    """Something found while scanning that is worth telling the user but not fatal."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def walk_folder(root: Path, include_hidden: bool = False) -> Iterator[tuple[str, list[str]]]:
    """(folder, its file names sorted) for `root` and every folder below it, in sorted
    order: the one folder walk of the library and the other networks' folders. Symlinked
    folders are followed once (a loop is cut); hidden folders and files only when asked."""
    visited: set[str] = set()
    for directory, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in visited:  # a symlink loop
            dirnames[:] = []
            continue
        visited.add(real)
        if not include_hidden:
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        dirnames.sort()
        yield directory, sorted(name for name in filenames if include_hidden or not name.startswith("."))


def scan_root(root: Path, include_hidden: bool, warnings: list[LibraryWarning]) -> list[LibraryEntry]:
    """Every hypernetwork file below `root` with its side-cars; what cannot be read goes
    to `warnings`."""
    entries = []
    for directory, filenames in walk_folder(root, include_hidden):
        files = set(filenames)
        relative_dir = Path(directory).relative_to(root).as_posix()
        for filename in filenames:
            stem, dot, suffix = filename.rpartition(".")
            format = HYPERNETWORK_EXTENSIONS.get(f".{suffix.lower()}") if dot else None
            if format is None or not stem or stem in EXCLUDED_STEMS:
                continue
            path = Path(directory) / filename
            try:
                stat = path.stat()
            except OSError as error:
                warnings.append(LibraryWarning(path, f"cannot be read ({error.strerror or error})"))
                continue
            if not path.is_file():
                continue
            relative_name = stem if relative_dir == "." else f"{relative_dir}/{stem}"
            description = _find_description(Path(directory), stem, files, warnings)
            user_metadata = _read_user_metadata(Path(directory), stem, files, warnings)
            if user_metadata.get("description") is not None:
                description = str(user_metadata["description"])
            entries.append(
                LibraryEntry(
                    name=stem,
                    path=path,
                    relative_name=relative_name,
                    format=format,
                    preview=_find_preview(Path(directory), stem, files),
                    description=description,
                    user_metadata=user_metadata,
                    mtime=stat.st_mtime,
                    size_bytes=stat.st_size,
                    root=root,
                )
            )
    return entries


def _find_preview(directory: Path, stem: str, files: set[str]) -> Path | None:
    for extension in PREVIEW_EXTENSIONS:
        for candidate in (f"{stem}.{extension}", f"{stem}.preview.{extension}"):
            if candidate in files:
                return directory / candidate
    return None


def _find_description(directory: Path, stem: str, files: set[str], warnings: list[LibraryWarning]) -> str | None:
    for suffix in DESCRIPTION_SUFFIXES:
        candidate = stem + suffix
        if candidate in files:
            try:
                return (directory / candidate).read_text(encoding="utf-8", errors="replace")
            except OSError as error:
                warnings.append(LibraryWarning(directory / candidate, f"cannot be read ({error.strerror or error})"))
    return None


def _read_user_metadata(directory: Path, stem: str, files: set[str], warnings: list[LibraryWarning]) -> dict:
    candidate = stem + USER_METADATA_SUFFIX
    if candidate not in files:
        return {}
    path = directory / candidate
    try:
        return read_json_object(path)
    except HypernetFileError as error:
        warnings.append(LibraryWarning(path, f"user metadata ignored: {error.reason}"))
        return {}
