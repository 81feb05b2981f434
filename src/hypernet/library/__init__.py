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

from .catalog import AmbiguousNameError, Library, UnknownNameError, format_multiplier
from .scan import (
    DEFAULT_ROOT,
    DESCRIPTION_SUFFIXES,
    EXCLUDED_STEMS,
    HYPERNETWORK_EXTENSIONS,
    PREVIEW_EXTENSIONS,
    USER_METADATA_SUFFIX,
    LibraryEntry,
    LibraryWarning,
)

__all__ = [
    "AmbiguousNameError",
    "DEFAULT_ROOT",
    "DESCRIPTION_SUFFIXES",
    "EXCLUDED_STEMS",
    "HYPERNETWORK_EXTENSIONS",
    "Library",
    "LibraryEntry",
    "LibraryWarning",
    "PREVIEW_EXTENSIONS",
    "USER_METADATA_SUFFIX",
    "UnknownNameError",
    "format_multiplier",
]
