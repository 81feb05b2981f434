"""PyTorch pickle files, read safely and written so that stock webui v1.10.1 accepts them.

Reading goes only through `torch.load(weights_only=True)`: a file whose pickle needs
anything beyond tensors, plain containers and the stand-ins a caller allows is refused
before any of it runs.
Writing re-packs `torch.save`'s zip without the `.format_version` / `.storage_alignment`
records that the webui's archive allow-list rejects (contract §1.1), keeping tensor data
64-byte aligned as torch lays it out.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
from typing import Any, Sequence

import torch

from ..errors import HypernetFileError
from ..fileio import atomic_path

ALIGNMENT = 64
_PAD_HEADER_ID = 0x4246  # an unregistered extra-field id, used only as padding
_DROPPED_RECORDS = (".format_version", ".storage_alignment")


def read_torch_file(path, stand_ins: Sequence[tuple[Any, str]] = ()):
    """The object stored in a PyTorch file, loaded as data only: the one safe loader for
    hypernetworks, their side-cars, embeddings and model checkpoints. `stand_ins` are
    (inert object, "module.Name") pairs allowed besides tensors and plain containers
    (the checkpoint reader's PyTorch Lightning records)."""
    try:
        # zip-format files are memory-mapped (no up-front read); legacy pickles cannot be
        mmap = zipfile.is_zipfile(path)
        with torch.serialization.safe_globals(list(stand_ins)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        name = _refused_global(str(error))
        needs = f"it needs {name}, which is code, not data" if name else f"it is not plain data ({_first_line(error)})"
        raise HypernetFileError(
            path,
            f"refused, not unpickled: {needs}. Only tensors, plain containers and numbers"
            f"{' (and a few inert records)' if stand_ins else ''} are loaded; convert the file to .safetensors "
            "with a tool you trust.",
        ) from None
    except FileNotFoundError:
        raise HypernetFileError(path, "no such file") from None
    except IsADirectoryError:
        raise HypernetFileError(path, "is a folder, expected a file") from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, struct.error, AttributeError, TypeError,
            KeyError) as error:
        raise HypernetFileError(
            path, f"not a readable PyTorch file, perhaps truncated or corrupt ({_first_line(error)})"
        ) from None


def _refused_global(message: str) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"unrecognized function ([^\s]+)", message)
    return match[1] if match else None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.strip()
    return text.splitlines()[0] if text else type(error).__name__


def torch_bytes_for_webui(obj) -> bytes:
    """`torch.save(obj)` as bytes, re-packed without the records the webui refuses."""
    raw = io.BytesIO()
    torch.save(obj, raw)
    raw.seek(0)
    packed = io.BytesIO()
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            if info.filename.endswith(_DROPPED_RECORDS):
                continue
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_STORED
            header_end = target.fp.tell() + 30 + len(info.filename.encode("utf-8")) + 4
            padding = -header_end % ALIGNMENT
            entry.extra = struct.pack("<HH", _PAD_HEADER_ID, padding) + b"\0" * padding
            target.writestr(entry, source.read(info))
    return packed.getvalue()


def write_torch_file(obj, path) -> None:
    """Write `obj` atomically as a webui-compatible PyTorch file."""
    data = torch_bytes_for_webui(obj)
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
