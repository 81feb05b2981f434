"""Prompts from a file, the webui's "Prompts from file or textbox" script: one prompt per
line, or a line of options (`--prompt "a cat" --steps 10 --seed 5`), each line a
`Request` whose unset fields come from the caller's defaults.

A run is cut into work items, one batch of one line each, with names, seeds and pixels
fixed by the file alone: `L0003-I01-SEED.png` is image 1 of line 3. So a killed run
resumes (items whose files all exist are skipped) and N processes can share a file
(process r takes the items whose index % N == r) with the same result as one process.
The index (`index.jsonl`) is rebuilt from the plan and the files on disk, under a lock,
by every process when it ends: the last one to end writes the complete index.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from .errors import HypernetError, HypernetFileError
from .request import MAX_SEED, Request

INDEX_NAME = "index.jsonl"


def _text(value: str) -> str:
    return value


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError("must be a number") from None


def _sampler(value: str) -> str:
    from .samplers import split_name

    base, schedule = split_name(value)  # a HypernetError listing the valid names
    return base if schedule == "Automatic" else f"{base} {schedule}"


def _schedule(value: str) -> str:
    from .samplers import SCHEDULES

    if value not in SCHEDULES:
        raise ValueError(f"must be one of {', '.join(SCHEDULES)}")
    return value


# The webui script's option -> (Request field, value parser). Its other options
# (styles, restore_faces, tiling, sd_model, outpath_*, ...) have no counterpart here.
OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "prompt": ("prompt", _text),
    "negative_prompt": ("negative_prompt", _text),
    "seed": ("seed", _whole),
    "subseed": ("subseed", _whole),
    "subseed_strength": ("subseed_strength", _number),
    "steps": ("steps", _whole),
    "cfg_scale": ("cfg_scale", _number),
    "sampler_name": ("sampler", _sampler),
    "scheduler": ("schedule", _schedule),
    "width": ("width", _whole),
    "height": ("height", _whole),
    "batch_size": ("batch_size", _whole),
    "n_iter": ("batch_count", _whole),
    "clip_skip": ("clip_skip", _whole),
}
_TEXT_OPTIONS = ("prompt", "negative_prompt")  # the webui joins the words up to the next --option


@dataclass
class PromptLine:
    """One line of a prompt file: its 1-based number and the request it asks for."""

    line: int
    request: Request


def parse_prompt_file(text: str, defaults: Request, source: str = "prompts") -> list[PromptLine]:
    """Every non-blank line of `text` as a request: a plain line is the prompt, a line
    starting with `--` is options (the webui's keys, see `OPTIONS`) over `defaults`.
    A random seed (-1) becomes a seed fixed by the line's number and text, so a re-run or
    another process makes the same images."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        if line.startswith("--"):
            request = dataclasses.replace(defaults, **_options(line, where))
        else:
            request = dataclasses.replace(defaults, prompt=line)
        for label, value in (("steps", request.steps), ("batch size", request.batch_size),
                             ("batch count (n_iter)", request.batch_count)):
            if value < 1:
                raise HypernetError(f"{where}: {label} must be at least 1 (got {value})")
        if request.seed is None or request.seed < 0:
            request = dataclasses.replace(request, seed=line_seed(number, line))
        lines.append(PromptLine(number, request))
    if not lines:
        raise HypernetError(f"{source}: holds no prompts (every line is blank)")
    return lines


def read_prompt_file(path, defaults: Request) -> list[PromptLine]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except UnicodeDecodeError:
        raise HypernetFileError(path, "is not UTF-8 text") from None
    except OSError as error:
        raise HypernetFileError(path, f"cannot be read ({error.strerror or error})") from None
    return parse_prompt_file(text, defaults, source=str(path))


def line_seed(number: int, text: str) -> int:
    digest = hashlib.sha256(f"{number}\n{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED


def _options(line: str, where: str) -> dict:
    valid = ", ".join(f"--{key}" for key in OPTIONS)
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise HypernetError(f"{where}: cannot be split into options ({error}); quote values with \"...\"") from None
    values: dict = {}
    position = 0
    while position < len(words):
        word = words[position]
        key = word[2:]
        if not word.startswith("--") or key not in OPTIONS:
            what = f"unknown option {word!r}" if word.startswith("--") else f"{word!r} is not an --option"
            raise HypernetError(f"{where}: {what}; valid options: {valid}")
        field, parse = OPTIONS[key]
        position += 1
        if position >= len(words) or (words[position].startswith("--") and key not in _TEXT_OPTIONS):
            raise HypernetError(f"{where}: --{key} needs a value")
        value = words[position]
        position += 1
        while key in _TEXT_OPTIONS and position < len(words) and not words[position].startswith("--"):
            value += " " + words[position]
            position += 1
        try:
            values[field] = parse(value)
        except (ValueError, HypernetError) as error:
            raise HypernetError(f"{where}: --{key} {value!r} {error}" if isinstance(error, ValueError)
                                else f"{where}: --{key}: {error}") from None
    return values


# -- the plan: work items, names, sharding ------------------------------------------------
@dataclass
class WorkItem:
    """One batch of one line: `batch_size` images, the first being image `first_image` of
    the line, made by `request` (its batch count 1, its seed that image's)."""

    index: int
    line: int
    first_image: int
    request: Request

    @property
    def names(self) -> list[str]:
        return [image_name(self.line, self.first_image + i, self.request.seed + i)
                for i in range(self.request.batch_size)]


def image_name(line: int, image: int, seed: int) -> str:
    return f"L{line:04d}-I{image:02d}-{seed}.png"


def plan(lines: list[PromptLine]) -> list[WorkItem]:
    """Every batch of every line, in file order; seeds as one process would draw them."""
    items = []
    for entry in lines:
        request = entry.request
        for batch in range(request.batch_count):
            first = batch * request.batch_size
            shifted = dataclasses.replace(
                request, batch_count=1, seed=request.seed + first,
                subseed=request.subseed + first if request.subseed is not None and request.subseed >= 0 else request.subseed)
            items.append(WorkItem(len(items), entry.line, first, shifted))
    return items


def shard(items: list[WorkItem], rank: int, world_size: int) -> list[WorkItem]:
    return [item for item in items if item.index % world_size == rank]


def shard_from_environment(environment: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) as `accelerate launch` and `torchrun` set them (RANK and
    WORLD_SIZE; LOCAL_RANK and LOCAL_WORLD_SIZE when only those are set); (0, 1) alone."""
    environment = os.environ if environment is None else environment
    for rank_name, size_name in (("RANK", "WORLD_SIZE"), ("LOCAL_RANK", "LOCAL_WORLD_SIZE")):
        if size_name in environment:
            try:
                rank, size = int(environment.get(rank_name, "0")), int(environment[size_name])
            except ValueError:
                raise HypernetError(f"{rank_name}={environment.get(rank_name)!r} and {size_name}={environment[size_name]!r} "
                                    "must be whole numbers") from None
            if size < 1 or not 0 <= rank < size:
                raise HypernetError(f"{rank_name}={rank} must be at least 0 and below {size_name}={size}")
            return rank, size
    return 0, 1


# -- running and the index -----------------------------------------------------------------
def pending(items: list[WorkItem], folder) -> list[WorkItem]:
    """The items with at least one image not yet in `folder`."""
    folder = Path(folder)
    return [item for item in items if not all((folder / name).exists() for name in item.names)]


def check_requests(generator, lines: list[PromptLine], source: str = "prompts") -> None:
    """Every line's request (sizes, steps, seeds, network tags) checked with `generator`
    before any image is made, errors naming the line."""
    multiple = max(8, generator.pipe.vae_scale_factor)
    for entry in lines:
        try:
            entry.request.validated(generator.native_size, multiple)
            generator.resolve_networks(entry.request.prompt, entry.request.negative_prompt)
        except HypernetError as error:
            raise HypernetError(f"{source}, line {entry.line}: {error}") from None


def run_items(generator, items: list[WorkItem], folder, on_image=None, should_stop=lambda: False,
              source: str = "prompts", progress: bool = False) -> tuple[int, int]:
    """Generate the items whose images are not all in `folder` yet; write each image as
    it comes. Returns (images written, images skipped)."""
    from .infotext import write_png

    folder = Path(folder)
    written = skipped = 0
    for item in items:
        missing = [name for name in item.names if not (folder / name).exists()]
        skipped += len(item.names) - len(missing)
        if not missing:
            continue
        if should_stop():
            break
        try:
            results = generator.generate(item.request, progress=progress)
        except HypernetError as error:
            raise HypernetError(f"{source}, line {item.line}: {error}") from None
        for name, result in zip(item.names, results):
            if name in missing:
                path = write_png(result.image, folder / name, result.infotext)
                written += 1
                if on_image is not None:
                    on_image(path, result)
    return written, skipped


def index_records(items: list[WorkItem], native_size: int | None) -> list[dict]:
    """One record per image of the plan, in (line, image) order (a size left to the
    model is `native_size`)."""
    records = []
    for item in items:
        request = item.request
        for offset, name in enumerate(item.names):
            records.append({
                "line": item.line, "image": item.first_image + offset, "file": name, "prompt": request.prompt,
                "negative_prompt": request.negative_prompt, "seed": request.seed + offset, "steps": request.steps,
                "cfg_scale": request.cfg_scale, "sampler": request.sampler, "schedule": request.schedule,
                "width": request.width or native_size, "height": request.height or native_size,
                "batch_size": request.batch_size,
            })
    return records


def write_index(folder, items: list[WorkItem], native_size: int | None) -> Path:
    """`index.jsonl`: the records of the plan's images that are on disk, whoever made
    them; under a lock, so of processes ending together the last sees every image."""
    from .fileio import atomic_path

    folder = Path(folder)
    path = folder / INDEX_NAME
    with _locked(folder / ".index.lock"):
        records = [r for r in index_records(items, native_size) if (folder / r["file"]).exists()]
        with atomic_path(path) as temporary:
            with open(temporary, "w", encoding="utf-8") as stream:
                for record in records:
                    stream.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@contextlib.contextmanager
def _locked(path: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no lock; a re-run rewrites the index
        yield
        return
    try:
        stream = open(path, "a")
    except OSError as error:
        raise HypernetFileError(path, f"cannot be written ({error.strerror or error})") from None
    with stream:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(stream.fileno(), fcntl.LOCK_UN)
