"""Small file helpers shared by every layer: atomic writes, the webui's short hash,
reading a JSON object, and the kill points the crash tests use."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
from pathlib import Path

from .errors import HypernetFileError


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename,
    on failure it is removed, so readers only ever see the old or the complete new file.
    Every writer goes through here: an `OSError` (no permission, disk full, a file where a
    folder should be) becomes a `HypernetFileError` naming `path`."""
    target = Path(path)
    make_folder(target.parent, for_file=target)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
        os.close(handle)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    except OSError as error:
        raise write_error(target, error) from None
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        kill_point(f"write:{target.name}")
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise write_error(target, error) from None
        raise


KILL_VARIABLE = "HYPERNET_TEST_KILL_AT"


def kill_point(moment: str) -> None:
    """A test hook: when the environment variable HYPERNET_TEST_KILL_AT equals `moment`, the
    process kills itself with SIGKILL right here, as `kill -9` would, so the crash tests
    (tests/training/test_kills.py) hit exact moments. Moments: `write:FILE` (FILE's complete
    temporary is about to replace it) and `step:N` (training, before step N + 1). Unset,
    it does nothing."""
    if os.environ.get(KILL_VARIABLE) == moment:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
def make_folder(folder, for_file=None) -> Path:
    """Create `folder` (and its parents) if missing; an `OSError` becomes a
    `HypernetFileError` naming `for_file` (the file about to be written) or the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(for_file or folder, error) from None
    return folder


def write_error(path, error: OSError) -> HypernetFileError:
    """A one-line message for a failed write: the OS's reason, and the path it concerns
    when that is not `path` itself (a parent in the way), never the temporary file."""
    reason = error.strerror or str(error) or type(error).__name__
    concerned = error.filename
    target = Path(path)
    if concerned is not None and str(concerned) != str(path) and not (
            Path(concerned).parent == target.parent and Path(concerned).name.startswith(f".{target.name}.")):
        reason += f": {concerned}"  # a folder in the way, not the file or its temporary
    return HypernetFileError(path, f"cannot be written ({reason})")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def sha256(path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(path) -> str:
    """First 10 hex digits of the file's sha256, as the webui shows and checks it."""
    return sha256(path)[:10]


def read_json_object(path) -> dict:
    """The object a JSON file holds (configs, vocabularies, side-cars): one reader, so every
    caller refuses the same things in the same words. Raises `HypernetFileError`, its
    `reason` saying what is wrong (unreadable or not valid JSON, or not an object)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HypernetFileError(path, f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise HypernetFileError(path, f"a JSON {type(value).__name__}, expected an object")
    return value
