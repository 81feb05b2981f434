"""The package's one error family: every message names the thing that is wrong."""

from __future__ import annotations


class HypernetError(Exception):
    """Base class of every error this package raises on purpose."""


class HypernetFileError(HypernetError):
    """A file (hypernetwork, checkpoint, side-car) that cannot be read or written as asked."""

    def __init__(self, path, message: str, key: str | None = None):
        self.path = str(path)
        self.key = key
        self.reason = message  # what is wrong, without the file's name
        where = f"{self.path}" + (f", key {key!r}" if key is not None else "")
        super().__init__(f"{where}: {message}")


class HypernetConfigError(HypernetError):
    """A structural option (layer structure, activation, sizes, ...) that is not valid."""


class PromptError(HypernetError):
    """A prompt that cannot be honoured; names the position in the prompt."""

    def __init__(self, message: str, position: int | None = None, text: str | None = None):
        self.position = position
        self.text = text
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"prompt{where}: {message}")
