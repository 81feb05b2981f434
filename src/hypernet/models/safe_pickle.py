"""Reading ``.ckpt`` / ``.pt`` pickles without running code from them.

Everything goes through the package's one safe loader (``formats.torchfile.read_torch_file``:
``torch.load(weights_only=True)``): tensors, plain containers and numbers only.
Checkpoints saved by PyTorch Lightning (the original Stable Diffusion training code,
and the webui's copies of it) also name a few Lightning classes in the
pickle, e.g. ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` as a key of
``checkpoint["callbacks"]``. For those exact names we allow-list inert stand-ins: plain
classes that only store the pickled state as data. Lightning is never imported and no
code from the file runs. Any other global is refused with its name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from ..formats.torchfile import read_torch_file


class InertRecord:
    """Stands in for a class named in a checkpoint's pickle; keeps the pickled state as data."""

    pickled_name = "?"

    def __init__(self, *args, **kwargs):
        self.arguments = (args, kwargs)

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<inert stand-in for {self.pickled_name}>"


class InertDict:
    """Stands in for a dict subclass (Lightning's AttributeDict): unpickles as a plain dict."""

    def __new__(cls, *args, **kwargs):
        return {}


_NUMERIC_DTYPE_NAMES = {
    "b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8",
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
}  # fmt: skip


class InertNumpyDtype:
    """Stands in for ``numpy.dtype`` while unpickling: records a numeric dtype name, nothing else."""

    def __init__(self, name, align=False, copy=False):
        if str(name) not in _NUMERIC_DTYPE_NAMES:
            raise pickle.UnpicklingError(f"numpy dtype {name!r} is not a plain numeric type")
        self.name = str(name)
        self.byte_order = "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byte_order = state[1]


def _numpy_scalar(dtype, data=b""):
    """Stands in for ``numpy.core.multiarray.scalar``: a numeric value from its raw bytes."""
    import numpy

    if not isinstance(dtype, InertNumpyDtype) or not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy scalar with an unsupported dtype or payload")
    order = "" if dtype.byte_order in ("|", "=") else dtype.byte_order
    value = numpy.frombuffer(bytes(data), dtype=numpy.dtype(order + dtype.name), count=1)[0]
    return value.item()


_LIGHTNING_CLASSES = [
    "callbacks.model_checkpoint.ModelCheckpoint",
    "callbacks.early_stopping.EarlyStopping",
    "callbacks.lr_monitor.LearningRateMonitor",
    "callbacks.progress.tqdm_progress.TQDMProgressBar",
    "trainer.states.TrainerFn",
    "trainer.states.RunningStage",
    "utilities.argparse._gpus_arg_default",
]


def _stand_ins() -> list[tuple[Any, str]]:
    allowed: list[tuple[Any, str]] = []
    for package in ("pytorch_lightning", "lightning.pytorch"):
        for name in _LIGHTNING_CLASSES:
            full = f"{package}.{name}"
            record = type(name.rsplit(".", 1)[-1], (InertRecord,), {"pickled_name": full, "__module__": __name__})
            allowed.append((record, full))
        allowed.append((InertDict, f"{package}.utilities.parsing.AttributeDict"))
    allowed.append((type("Namespace", (InertRecord,), {"pickled_name": "argparse.Namespace"}), "argparse.Namespace"))
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((_numpy_scalar, f"{module}.scalar"))
    allowed.append((InertNumpyDtype, "numpy.dtype"))
    return allowed


STAND_INS: tuple[tuple[Any, str], ...] = tuple(_stand_ins())
ALLOWED_GLOBALS = tuple(name for _, name in STAND_INS)


def load_torch_file(path: str | Path) -> Any:
    """A checkpoint's pickle, as data, with the inert Lightning stand-ins allowed."""
    return read_torch_file(Path(path), stand_ins=STAND_INS)
