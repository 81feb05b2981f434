"""The package's one error family: every message names the thing that is wrong."""

from __future__ import annotations

import reprlib


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


def listing(items, limit: int = 5) -> str:
    """'a, b, c and 12 more': the first few of many items, so a message stays short."""
    items = [str(item) for item in items]
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def short_repr(value, limit: int = 120) -> str:
    """`repr(value)` cut to about `limit` characters, long lists showing their first
    entries and their length: values read from a file can be any size."""
    text = _Shortener().repr(value)
    if isinstance(value, (list, tuple)) and len(value) > 6:
        text += f" ({len(value)} entries)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_text(value: int) -> str:
    # very long integers cannot even be turned into text (Python refuses above 4300 digits)
    return repr(value) if value.bit_length() < 128 else f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"


class _Shortener(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 6
        self.maxstring = self.maxother = 60

    def repr_int(self, value, level):
        return _int_text(value)
