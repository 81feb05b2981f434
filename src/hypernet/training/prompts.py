"""Training prompts: template files, captions and the text of one training example (§7.3).

A template is a text file with one prompt per line; `[filewords]` is replaced by the
image's caption and `[name]` by the hypernetwork's name. The caption comes from the
image's `.txt` file, else from its file name. With tag shuffling or tag dropout the
caption is split on commas, thinned and shuffled anew for every example.

Differences from the webui, on purpose: blank template lines are ignored (the webui
could train on an empty prompt), caption files are stripped of surrounding whitespace,
and tags are re-joined with ", " (the CLIP tokenizer reads "a,b" and "a, b" alike).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..errors import HypernetConfigError, HypernetFileError
from .config import DEFAULT_TEMPLATE  # noqa: F401  (re-exported)
NAME_FIELD = "[name]"
CAPTION_FIELD = "[filewords]"
# What classifier-free guidance's unconditional branch encodes when no negative prompt is
# given; `caption_dropout` trains on it so a network's look survives guidance.
UNCONDITIONAL_PROMPT = ""
_LEADING_NUMBERS = re.compile(r"^[\d-]+\s*")


def packaged_templates_folder() -> Path:
    return Path(str(resources.files("hypernet") / "data" / "templates"))


def template_folders(extra: Iterable = ()) -> list[Path]:
    """Where template names are looked up: the given folders first, then the shipped set."""
    return [Path(folder) for folder in extra] + [packaged_templates_folder()]


def available_templates(folders: Sequence[Path]) -> dict[str, Path]:
    """File name -> path over all folders (searched recursively); earlier folders win."""
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.rglob("*.txt")):
                found.setdefault(path.name, path)
    return found


def find_template(name, folders: Sequence[Path]) -> Path:
    """A template by path, or by file name (with or without `.txt`) in `folders`."""
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    if candidate.is_dir():
        raise HypernetConfigError(f"template {str(name)!r} is a folder; give a template file or a template name")
    templates = available_templates(folders)
    key = candidate.name if candidate.suffix == ".txt" else candidate.name + ".txt"
    if key in templates and candidate.parent == Path("."):
        return templates[key]
    listed = ", ".join(sorted(templates)) or "none"
    raise HypernetConfigError(f"template {str(name)!r} not found (looked in {', '.join(map(str, folders))}); available: {listed}")


def read_template(path) -> list[str]:
    """The template's prompt lines (stripped, blank lines dropped); refuses empty files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise HypernetFileError(path, f"template is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise HypernetFileError(path, f"template cannot be read ({error.strerror or error})") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise HypernetFileError(path, "template is empty; it needs at least one prompt line, e.g. 'a picture of [filewords]'")
    return lines


def caption_from_file_name(path, word_regex: str = "", join: str = " ") -> str:
    """The file name as a caption: leading digits/dashes dropped, optionally reduced to
    the matches of `word_regex` joined with `join` (the webui's filename options)."""
    text = _LEADING_NUMBERS.sub("", Path(path).stem, count=1)
    if word_regex:
        try:
            pattern = re.compile(word_regex)
        except re.error as error:
            raise HypernetConfigError(f"filename word regex {word_regex!r} does not compile: {error}") from None
        words = pattern.findall(text)
        text = join.join(word if isinstance(word, str) else "".join(word) for word in words)
    return text


def read_caption(image_path, word_regex: str = "", join: str = " ") -> str:
    """`<image>.txt` beside the image if it exists, else the file-name caption."""
    image_path = Path(image_path)
    caption_path = image_path.with_suffix(".txt")
    if caption_path.is_file():
        try:
            return caption_path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError as error:
            raise HypernetFileError(caption_path, f"caption cannot be read ({error.strerror or error})") from None
    return caption_from_file_name(image_path, word_regex, join)


def split_tags(caption: str) -> list[str]:
    return [tag.strip() for tag in caption.split(",") if tag.strip()]


def vary_tags(caption: str, generator: torch.Generator, shuffle: bool, dropout: float) -> str:
    """The caption with each tag kept with probability 1 - dropout, then shuffled."""
    tags = split_tags(caption)
    if dropout > 0:
        keep = torch.rand(len(tags), generator=generator) >= dropout
        tags = [tag for tag, kept in zip(tags, keep.tolist()) if kept]
    if shuffle and len(tags) > 1:
        order = torch.randperm(len(tags), generator=generator).tolist()
        tags = [tags[i] for i in order]
    return ", ".join(tags)


def fill_template(line: str, caption: str, name: str) -> str:
    return line.replace(CAPTION_FIELD, caption).replace(NAME_FIELD, name)


def pick_line(lines: Sequence[str], generator: torch.Generator) -> str:
    return lines[int(torch.randint(len(lines), (1,), generator=generator))]


def training_prompt(lines: Sequence[str], caption: str, name: str, generator: torch.Generator,
                    shuffle: bool = False, dropout: float = 0.0, line: str | None = None) -> str:
    """One example's prompt: a template line (random unless given), the caption varied
    as asked, `[name]` filled in. Deterministic in the generator's state."""
    chosen = line if line is not None else pick_line(lines, generator)
    if shuffle or dropout > 0:
        caption = vary_tags(caption, generator, shuffle, dropout)
    return fill_template(chosen, caption, name)
