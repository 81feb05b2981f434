"""Which run folder a run goes to, so that no run's files are ever overwritten.

A run folder holds one run, perhaps in several segments (a first start and its resumes),
each described by a settings file (`settings.json`, `settings-from-STEP.json`) that
records the command (options, the network file's hash, the output, the resume file) and,
once the final save is complete, how the segment ended. A run that has no such ending
was killed (or failed): the same command run again continues it from its last complete
checkpoint. Any other run goes to the default folder only if nothing there lies beyond
the step it starts from, else to the first free `FOLDER-2`, `FOLDER-3`, ...
"""

from __future__ import annotations

import csv
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HypernetFileError
from ..fileio import read_json_object
from . import checkpoints, run_files

CHECKPOINT_FOLDER = "hypernetworks"
PREVIEW_FOLDER = "images"


@dataclass
class Record:
    """What a folder holds of a run."""

    folder: Path
    settings: Path | None  # the latest segment's settings file
    data: dict  # its content
    commands: list[dict]  # the command of every segment
    checkpoints: dict[int, Path]  # visible checkpoints by step
    last_logged: int  # the last step in the loss CSV

    @classmethod
    def read(cls, folder, name: str) -> "Record | None":
        folder = Path(folder)
        if not folder.is_dir():
            return None
        segments = _segments(folder)
        _, _, settings, data = max(segments, key=lambda s: s[:2]) if segments else (0, 0, None, {})
        pattern = re.compile(re.escape(name) + r"-(\d+)\.(pt|safetensors)")
        found = {}
        for path in (folder / CHECKPOINT_FOLDER).glob(f"{name}-*"):
            match = pattern.fullmatch(path.name)
            if match:
                found[int(match.group(1))] = path
        commands = [segment[3].get("command") for segment in segments]
        return cls(folder, settings, data, commands, found, _last_logged(folder / run_files.CSV_NAME))

    @property
    def unfinished(self) -> bool:
        return self.settings is not None and "ended" not in self.data

    @property
    def last_step(self) -> int:
        return max([self.last_logged, *self.checkpoints])


def _segments(folder: Path) -> list[tuple[int, int, Path, dict]]:
    """(segment number, modification time, path, content) of every readable settings file."""
    segments = []
    for path in folder.glob("settings*.json"):
        try:
            data = read_json_object(path)
        except HypernetFileError:
            continue
        number = data.get("segment", 0)
        segments.append((number if isinstance(number, int) else 0, path.stat().st_mtime_ns, path, data))
    return segments


def _last_logged(path: Path) -> int:
    last = 0
    try:
        with open(path, newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                try:
                    last = max(last, int(row["step"]))
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        pass
    return last


@dataclass
class Placement:
    run_dir: Path
    continue_from: Path | None = None  # the unfinished run's checkpoint to go on from
    segment: Path | None = None  # its settings file, when restarted from its own start
    seed: int | None = None  # its seed
    batch: tuple[int, int] | None = None  # its (batch size per process, processes)
    messages: list[str] = field(default_factory=list)


def _continuation(record: Record | None, start_step: int, command: dict) -> Placement | None:
    """The unfinished run that this very command started or continued, continued."""
    if record is None or not record.unfinished or command not in record.commands:
        return None
    later = sorted((step for step in record.checkpoints if step > start_step), reverse=True)
    complete = [step for step in later if checkpoints.read_state(record.checkpoints[step])[0] is not None]
    chosen = record.checkpoints[(complete or later)[0]] if later else None
    same_start = chosen is None and record.data.get("start_step") == start_step
    where = f"its checkpoint {chosen.name}" if chosen else f"step {start_step} (it stopped before its first checkpoint)"
    message = (f"continuing the unfinished run in {record.folder} from {where}: this same command was stopped "
               f"there (give another --run-dir to start over elsewhere)")
    seed = record.data.get("seed")
    batch = record.data.get("batch_size"), record.data.get("processes")
    return Placement(record.folder, chosen, record.settings if same_start else None,
                     int(seed) if isinstance(seed, int) else None,
                     batch if all(isinstance(n, int) and n > 0 for n in batch) else None, [message])


def place(default, name: str, start_step: int, command: dict, resume=None, search=()) -> Placement:
    """Where a run starting at `start_step` goes. An unfinished run of the same `command`
    (in `search` or in `default`'s chain) is continued; otherwise `default`, or the first
    `default-N` where this run overwrites nothing: no checkpoint beyond `start_step`, and
    no logged step beyond it unless the run resumes from a checkpoint of that folder."""
    for folder in search:
        found = _continuation(Record.read(folder, name), start_step, command)
        if found is not None:
            return found
    default = Path(default)
    folder, record = default, Record.read(default, name)
    first = record
    for number in itertools.count(2):
        found = _continuation(record, start_step, command)
        if found is not None:
            return found
        if record is None or _accepts(record, start_step, resume):
            break
        folder = default.with_name(f"{default.name}-{number}")
        record = Record.read(folder, name)
    messages = []
    if folder != default:
        messages.append(f"{default} holds another run's files (up to step {first.last_step}); "
                        f"this run goes to {folder} so that none of them is overwritten")
    return Placement(folder, messages=messages)


def _accepts(record: Record, start_step: int, resume) -> bool:
    if any(step > start_step for step in record.checkpoints):
        return False
    inside = resume is not None and Path(resume).resolve().parent == (record.folder / CHECKPOINT_FOLDER).resolve()
    return inside or record.last_logged <= start_step


def other_runs(log_dir, name: str) -> list[Path]:
    """Earlier days' folders of `name` under `log_dir`, newest first: where a run killed
    before midnight is found the next day."""
    root = Path(log_dir)
    folders = [*root.glob(f"*/{name}"), *root.glob(f"*/{name}-[0-9]*")]
    return sorted((f for f in folders if f.is_dir()), key=lambda f: f.stat().st_mtime_ns, reverse=True)


def settings_path(run_dir: Path, start_step: int, reuse: Path | None = None) -> tuple[Path, int]:
    """(the new segment's settings file, its segment number): never an existing file, but
    the segment's own file when it restarts from its own start."""
    segment = max((s[0] for s in _segments(run_dir)), default=0) + 1 if run_dir.is_dir() else 1
    if reuse is not None:
        return reuse, segment
    names = itertools.chain([run_files.SETTINGS_NAME, f"settings-from-{start_step}.json"],
                            (f"settings-from-{start_step}-{n}.json" for n in itertools.count(2)))
    return next(run_dir / n for n in names if not (run_dir / n).exists()), segment


def mark_ended(settings: Path, reason: str, step: int, output) -> None:
    """Record that a segment ended with its final save complete (or nothing to save)."""
    try:
        data = read_json_object(settings)
    except HypernetFileError:
        return
    data["ended"] = {"reason": str(reason), "step": step, "output": str(output) if output else None}
    run_files.write_json(settings, data)


def remove_stale(run_dir: Path, name: str, output: Path | None) -> list[Path]:
    """Temporary files left by killed saves of this run (and checkpoint side-cars whose
    network never appeared), removed; the paths removed."""
    places = [(run_dir / CHECKPOINT_FOLDER, (f"{name}-",)), (run_dir / PREVIEW_FOLDER, (f"{name}-",)),
              (run_dir, ("settings", f"{run_files.CSV_NAME}.", f"{run_files.PLOT_NAME}."))]
    if output is not None:
        places.append((output.parent, (f"{output.name}.",)))
    removed = []
    for folder, prefixes in places:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.lstrip(".").startswith(prefixes) \
                    and path.name.endswith((".tmp", ".png")) and path.is_file():
                removed.append(path)
    folder = run_dir / CHECKPOINT_FOLDER
    if folder.is_dir():
        for suffix in (".optim", checkpoints.STATE_SUFFIX):
            for path in folder.glob(f"{name}-*{suffix}"):
                if not path.with_name(path.name[:-len(suffix)]).exists():
                    removed.append(path)
    for path in removed:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return removed


def check_writable(folder, what: str) -> None:
    """Raise unless `folder` (perhaps not there yet) can be created and written in; `what`
    names what goes there ("the output file out.pt")."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise HypernetFileError(probe, f"is not a folder, so {what} cannot be written; choose another")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise HypernetFileError(probe, f"is not writable, so {what} cannot be written; choose another place or "
                                       "make it writable")
