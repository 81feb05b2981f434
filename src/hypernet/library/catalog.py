"""The library's names and files: what a name means (relative file, relative name, base
name; the first root shadows the others), suggestions for unknown names, loading and
hashing cached per file version, and the user metadata side-car written back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..errors import HypernetError, HypernetFileError
from ..fileio import atomic_path, read_json_object, short_hash
from ..prompt.networks import closest_names
from .scan import DEFAULT_ROOT, LibraryEntry, LibraryWarning, scan_root

if TYPE_CHECKING:  # pragma: no cover
    from ..network import Hypernetwork


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
            for entry in scan_root(root, self.include_hidden, warnings):
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
        return closest_names(query, names, count)

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
        from ..formats import load as load_file

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
        from ..formats import detect_format
        from ..inspection import network_facts

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
            facts = network_facts(self.load(entry))
            result["sizes"] = facts["sizes"]
            result["parameters"] = facts["parameters"]
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
                data = read_json_object(path)
            except HypernetFileError as error:
                raise HypernetFileError(path, f"{error.reason}; fix or remove it before writing metadata") from None
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
