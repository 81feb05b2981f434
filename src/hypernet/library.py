"""The hypernetwork library folder: what is there, what a prompt tag's name means, and
loading by name without the webui's stale cache.

The webui (contract §5) lists `models/hypernetworks/**/*.pt`, names each file by its base
name and lets the later of two same-named files win silently. Here both `.pt` and
`.safetensors` are listed, every file stays addressable by its relative name
(`sub/name`), and a base name shared by several files is an error that lists them.
Loaded networks are cached per `Library` object and keyed by the file's identity
(mtime, size, inode), so a re-trained file is reloaded on the next `load` (webui #5326).

Nothing here imports torch until a file is actually loaded.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .errors import HypernetError, HypernetFileError
from .fileio import atomic_path, short_hash

if TYPE_CHECKING:  # pragma: no cover
    from .network import Hypernetwork

DEFAULT_ROOT = "models/hypernetworks"
# File extension -> format name, as `hypernet.formats` spells it.
HYPERNETWORK_EXTENSIONS = {".pt": "pt", ".safetensors": "safetensors"}
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")
DESCRIPTION_SUFFIXES = (".txt", ".description.txt")
USER_METADATA_SUFFIX = ".json"
# The webui's placeholder entry "None" is never a file name it lists.
EXCLUDED_STEMS = frozenset({"None"})


class UnknownNameError(HypernetError):
    """No file in the library answers to the name; `suggestions` holds the closest names."""

    def __init__(self, message: str, name: str, suggestions: list[str]):
        super().__init__(message)
        self.name = name
        self.suggestions = suggestions


class AmbiguousNameError(HypernetError):
    """Several files answer to the name; `candidates` holds them, each addressable by
    its own (relative) name."""

    def __init__(self, message: str, name: str, candidates: list["LibraryEntry"]):
        super().__init__(message)
        self.name = name
        self.candidates = candidates


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


def format_multiplier(multiplier: float) -> str:
    """How a tag we write spells its multiplier: as the webui's cards do (a JavaScript
    number: 1, 0.75, -0.5, 0.30000000000000004), the one form for cards, grids and tags."""
    value = float(multiplier)
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


class Library:
    """The hypernetwork files under one or more folders.

    The folders are scanned on first use and again on `refresh()` (or when a name is not
    found, once, so a file written since the last scan is picked up). The object owns its
    caches; two `Library` objects share nothing.
    """

    def __init__(self, root=DEFAULT_ROOT, extra_roots=(), include_hidden: bool = False):
        # The same folder named twice (say, relative and absolute) is one root, not a
        # source of "ambiguous name" errors.
        self.roots: list[Path] = []
        for candidate in (Path(root), *(Path(extra) for extra in extra_roots)):
            if not any(_same_folder(candidate, known) for known in self.roots):
                self.roots.append(candidate)
        self.include_hidden = include_hidden
        self.warnings: list[LibraryWarning] = []
        self._entries: list[LibraryEntry] | None = None
        self._networks: dict[Path, tuple[tuple, "Hypernetwork"]] = {}
        self._hashes: dict[Path, tuple[tuple, str]] = {}

    @property
    def root(self) -> Path:
        return self.roots[0]

    def __repr__(self) -> str:
        count = "not scanned" if self._entries is None else f"{len(self._entries)} files"
        return f"Library({', '.join(map(str, self.roots))}; {count})"

    # -- listing ----------------------------------------------------------------------
    def refresh(self) -> list[LibraryEntry]:
        """Rescan the folders; cached networks of files that are gone are dropped."""
        warnings: list[LibraryWarning] = []
        found: list[tuple[tuple, LibraryEntry]] = []
        for index, root in enumerate(self.roots):
            if not root.exists():
                warnings.append(LibraryWarning(root, "folder does not exist"))
                continue
            if not root.is_dir():
                warnings.append(LibraryWarning(root, "is not a folder"))
                continue
            for entry in self._scan_root(root, warnings):
                found.append(((entry.relative_file.lower(), index, str(entry.path)), entry))
        found.sort(key=lambda item: item[0])
        self._entries = [entry for _, entry in found]
        self.warnings = warnings
        present = {entry.path for entry in self._entries}
        for cache in (self._networks, self._hashes):
            for path in [path for path in cache if path not in present]:
                del cache[path]
        return list(self._entries)

    def entries(self) -> list[LibraryEntry]:
        """Every file, sorted by lower-cased relative path (then by folder order)."""
        if self._entries is None:
            self.refresh()
        return list(self._entries)

    def __iter__(self) -> Iterator[LibraryEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __contains__(self, name) -> bool:
        return len(self._matches(str(name))) == 1

    def ambiguities(self) -> dict[str, list[LibraryEntry]]:
        """Base names shared by more than one file, each with the files that share it."""
        by_name: dict[str, list[LibraryEntry]] = {}
        for entry in self.entries():
            by_name.setdefault(entry.name, []).append(entry)
        return {name: entries for name, entries in sorted(by_name.items()) if len(entries) > 1}

    def _scan_root(self, root: Path, warnings: list[LibraryWarning]) -> list[LibraryEntry]:
        entries = []
        visited: set[str] = set()
        for directory, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(directory)
            if real in visited:  # a symlink loop
                dirnames[:] = []
                continue
            visited.add(real)
            if not self.include_hidden:
                dirnames[:] = [name for name in dirnames if not name.startswith(".")]
            dirnames.sort()
            files = set(filenames)
            relative_dir = Path(directory).relative_to(root).as_posix()
            for filename in sorted(filenames):
                if filename.startswith(".") and not self.include_hidden:
                    continue
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

    # -- names ------------------------------------------------------------------------
    def _matches(self, query: str) -> list[LibraryEntry]:
        """The entries the query names, at the first level that names any: relative file
        (`sub/a.pt`), relative name (`sub/a`), base name (`a`), then a file path."""
        query = query.replace("\\", "/")
        entries = self.entries()
        for key in (lambda e: e.relative_file, lambda e: e.relative_name, lambda e: e.name):
            found = [entry for entry in entries if key(entry) == query]
            if found:
                return found
        try:
            target = Path(query).resolve()
        except (OSError, ValueError):
            return []
        return [entry for entry in entries if entry.path.resolve() == target]

    def resolve(self, name) -> LibraryEntry:
        """The one file a name means. Unknown names rescan once before failing; a name
        found in several roots means the file in the first of them; a name ambiguous
        within one root fails listing every candidate."""
        if isinstance(name, LibraryEntry):
            return name
        query = str(name)
        found = self._matches(query)
        if not found:
            self.refresh()
            found = self._matches(query)
        found = self._shadowed(found)
        if len(found) == 1:
            return found[0]
        if found:
            listed = ", ".join(f"{self.tag_name(entry)} ({entry.path})" for entry in found)
            raise AmbiguousNameError(
                f"hypernetwork name {query!r} is ambiguous: {len(found)} files match: {listed}; "
                f"use one of those names instead, e.g. <hypernet:{self.tag_name(found[0])}>",
                query,
                found,
            )
        raise UnknownNameError(self._unknown_message(query), query, self.suggestions(query))

    def _shadowed(self, found: list[LibraryEntry]) -> list[LibraryEntry]:
        """Roots are searched in order: the user's folder shadows the extra ones (the
        package's demo networks), so a user's own `water` is simply theirs."""
        if len(found) > 1:
            first_root = min(self._root_rank(entry) for entry in found)
            found = [entry for entry in found if self._root_rank(entry) == first_root]
        return found

    def _visible_matches(self, query: str) -> list[LibraryEntry]:
        return self._shadowed(self._matches(query))

    def _root_rank(self, entry: LibraryEntry) -> int:
        for rank, root in enumerate(self.roots):
            if entry.root is not None and _same_folder(entry.root, root):
                return rank
        return len(self.roots)

    def suggestions(self, query: str, count: int = 5) -> list[str]:
        """The names closest to an unknown one (case-insensitive matches first)."""
        names: list[str] = []
        for entry in self.entries():
            for name in (entry.name, entry.relative_name):
                if name not in names:
                    names.append(name)
        folded = [name for name in names if name.lower() == query.lower()]
        lowered = {name.lower(): name for name in names}
        close = [lowered[name] for name in difflib.get_close_matches(query.lower(), list(lowered), n=count, cutoff=0.6)]
        return list(dict.fromkeys(folded + close))[:count]

    def _unknown_message(self, query: str) -> str:
        where = ", ".join(str(root) for root in self.roots)
        close = self.suggestions(query)
        if close:
            return f"no hypernetwork named {query!r} in {where}; closest names: {', '.join(close)}"
        names = sorted({self.tag_name(entry) for entry in self.entries()}, key=str.lower)
        if not names:
            return f"no hypernetwork named {query!r}: {where} holds no .pt or .safetensors files"
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
        return f"no hypernetwork named {query!r} in {where}; available: {shown}"

    def tag_name(self, name) -> str:
        """The shortest name that means exactly this file: the base name unless another
        file shares it, then the relative name, then the relative name with extension."""
        entry = self.resolve(name)
        for candidate in (entry.name, entry.relative_name, entry.relative_file):
            if self._visible_matches(candidate) == [entry]:
                return candidate
        return str(entry.path)

    def prompt_tag(self, name, multiplier: float = 1.0) -> str:
        """`<hypernet:NAME:MULTIPLIER>` for a prompt, with a name that cannot be misread."""
        return f"<hypernet:{self.tag_name(name)}:{format_multiplier(multiplier)}>"

    # -- loading ------------------------------------------------------------------------
    def load(self, name) -> "Hypernetwork":
        """The network for a name, loaded once per file version. The returned object is
        shared by later calls: pass multipliers alongside it rather than setting them."""
        from .formats import load as load_file

        entry = self.resolve(name)
        key = _file_key(entry.path)
        cached = self._networks.get(entry.path)
        if cached is not None and cached[0] == key:
            return cached[1]
        self._networks.pop(entry.path, None)
        network = load_file(entry.path)
        self._networks[entry.path] = (key, network)
        return network

    def short_hash(self, name) -> str:
        """The webui's short hash (10 hex digits of the sha256), cached per file version."""
        entry = self.resolve(name)
        key = _file_key(entry.path)
        cached = self._hashes.get(entry.path)
        if cached is not None and cached[0] == key:
            return cached[1]
        value = short_hash(entry.path)
        self._hashes[entry.path] = (key, value)
        return value

    def info(self, name) -> dict:
        """A JSON-able description of one file; the file is read (and cached) here, not
        when listing. A file that fails to load is described with its error."""
        from .formats import detect_format

        entry = self.resolve(name)
        result = {
            "name": entry.name,
            "relative_name": entry.relative_name,
            "tag_name": self.tag_name(entry),
            "prompt_tag": self.prompt_tag(entry),
            "path": str(entry.path),
            "format": entry.format,
            "size_bytes": entry.size_bytes,
            "mtime": entry.mtime,
            "preview": str(entry.preview) if entry.preview else None,
            "description": entry.description,
            "user_metadata": entry.user_metadata,
            "sizes": None,
            "parameters": None,
            "short_hash": None,
            "error": None,
        }
        try:
            result["format"] = detect_format(entry.path)
            network = self.load(entry)
            result["sizes"] = network.sizes
            result["parameters"] = network.parameter_count()
            result["short_hash"] = self.short_hash(entry)
        except HypernetError as error:
            result["error"] = str(error)
        return result

    # -- user metadata --------------------------------------------------------------------
    def write_user_metadata(self, name, description: str | None = None, notes: str | None = None) -> dict:
        """Set `description` and/or `notes` in `<stem>.json` (other keys kept), written
        atomically as the webui's editor writes it (UTF-8, indent 4). None leaves a
        field as it is. A side-car that is not a JSON object is refused, not replaced."""
        entry = self.resolve(name)
        path = entry.user_metadata_path
        data: dict = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise HypernetFileError(path, f"cannot be read as JSON ({error}); fix or remove it before writing metadata") from None
            if not isinstance(data, dict):
                raise HypernetFileError(path, f"holds a JSON {type(data).__name__}, expected an object; fix or remove it before writing metadata")
        if description is not None:
            data["description"] = description
        if notes is not None:
            data["notes"] = notes
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
        self.refresh()
        return data


def _same_folder(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False


def _file_key(path: Path) -> tuple:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise HypernetFileError(path, "no longer exists; call refresh() or rescan the library") from None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        warnings.append(LibraryWarning(path, f"user metadata ignored: not valid JSON ({error})"))
        return {}
    if not isinstance(data, dict):
        warnings.append(LibraryWarning(path, f"user metadata ignored: a JSON {type(data).__name__}, expected an object"))
        return {}
    return data
