"""What kind of file this is, from its first bytes (users rename files): the one detector
for hypernetwork files and model checkpoints."""

from __future__ import annotations

from ..errors import HypernetFileError

HEAD_BYTES = 16


def format_from_bytes(head: bytes) -> str | None:
    """'pt' (torch.save's zip, or a legacy pickle) or 'safetensors' (an 8-byte header
    length, then the JSON header's '{'), from a file's first bytes; None for anything else."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "pt"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return None


def detect_format(path) -> str:
    """'pt' or 'safetensors', from the hypernetwork file's first bytes."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(HEAD_BYTES)
    except FileNotFoundError:
        raise HypernetFileError(path, "no such file") from None
    except IsADirectoryError:
        raise HypernetFileError(path, "is a folder, expected a hypernetwork file") from None
    found = format_from_bytes(head)
    if found is not None:
        return found
    if not head:
        raise HypernetFileError(path, "is empty")
    raise HypernetFileError(path, "is neither a PyTorch (.pt) nor a safetensors file")
