"""Extra-network tags `<TYPE:NAME[:MULTIPLIER[:…]]>`: found as the webui finds them, then
checked more strictly than the webui checks them (see docs/prompt.md for each rule)."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import PromptError

# The webui's tag pattern: a type of word characters (Unicode-aware), a colon, then
# anything up to the first '>'. Every match is removed from the text, nothing around it.
TAG_PATTERN = re.compile(r"<(\w+):([^>]+)>")

# Types we activate, and the names the webui also accepts for them (its Lora extension
# registers "lyco" as an alias of "lora").
NETWORK_TYPES = ("hypernet", "lora")
TYPE_ALIASES = {"lyco": "lora"}

NEGATIVE_MODES = ("apply", "remove", "keep")


class NetworkTag(NamedTuple):
    """One activated network: compares equal to the plain (type, name, multiplier) tuple."""

    type: str
    name: str
    multiplier: float


@dataclass(frozen=True)
class TagMatch:
    """One webui tag match, before any checking: `args` is the text after the first colon
    split on ':' (as the webui splits it); start/end delimit the whole `<…>`."""

    type: str
    args: tuple
    start: int
    end: int

    @property
    def text(self) -> str:
        return f"<{self.type}:{':'.join(self.args)}>"


def find_tags(text: str) -> list[TagMatch]:
    """Every tag the webui would remove from `text`, in order."""
    return [
        TagMatch(match.group(1), tuple(match.group(2).split(":")), match.start(), match.end())
        for match in TAG_PATTERN.finditer(text)
    ]


def remove_tags(text: str) -> tuple[str, list[int]]:
    """`text` without its tags, and for each remaining character its position in `text`."""
    pieces = []
    positions: list[int] = []
    at = 0
    for match in TAG_PATTERN.finditer(text):
        pieces.append(text[at : match.start()])
        positions.extend(range(at, match.start()))
        at = match.end()
    pieces.append(text[at:])
    positions.extend(range(at, len(text)))
    return "".join(pieces), positions


def closest_names(name: str, available, count: int = 3) -> list[str]:
    """Up to `count` names from `available` that look like `name` (for 'did you mean'):
    case-only differences first (difflib scores them low; they are the likeliest typo),
    then difflib's closest, compared case-insensitively. The one suggester for prompt
    tags, the library and the other networks' folders."""
    available = list(available)
    folded = [candidate for candidate in available if candidate.lower() == name.lower()]
    lowered = {candidate.lower(): candidate for candidate in available}
    close = [lowered[found] for found in difflib.get_close_matches(name.lower(), list(lowered), n=count, cutoff=0.6)]
    return list(dict.fromkeys(folded + close))[:count]


def _where(position: int, label: str | None) -> str:
    return f"{label} position {position}" if label else f"position {position}"


def _error(message: str, tag: TagMatch, text: str, label: str | None = None, reason: str = "tag") -> PromptError:
    prefix = f"in the {label}: " if label else ""
    error = PromptError(f"{prefix}{tag.text}: {message}", position=tag.start, text=text)
    error.reason = reason  # which rule failed, for check()'s explanation
    return error


def read_multiplier(value: str) -> float:
    """The webui reads a multiplier with Python's float(); so do we, but refuse what
    float() accepts and no multiplier should be (nan, inf). Raises ValueError."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value.strip()!r} is not a finite number")
    return number


def network_of(tag: TagMatch, text: str, label: str | None = None) -> NetworkTag:
    """The network a tag asks for, or PromptError saying what is wrong with the tag."""
    kind = TYPE_ALIASES.get(tag.type, tag.type)
    if kind not in NETWORK_TYPES:
        hint = closest_names(tag.type, NETWORK_TYPES + tuple(TYPE_ALIASES))
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise _error(
            f"unknown network type {tag.type!r}{suggestion}; supported types: {', '.join(NETWORK_TYPES)} "
            "(type names are case-sensitive)",
            tag,
            text,
            label,
            "type",
        )
    name = tag.args[0].strip()
    if not name:
        raise _error("the name is empty; write <type:name> or <type:name:multiplier>", tag, text, label, "name")
    if kind == "lora" and (tag.args[2:] or any(arg.count("=") == 1 for arg in tag.args[1:])):
        raise _error(
            "separate text-encoder/UNet multipliers and named arguments (te=, unet=, dyn=) are not supported; "
            f"write <{tag.type}:{name}:MULTIPLIER>",
            tag,
            text,
            label,
            "lora-args",
        )
    multiplier = 1.0
    if len(tag.args) > 1:
        try:
            multiplier = read_multiplier(tag.args[1])
        except ValueError:
            raise _error(
                f"multiplier {tag.args[1]!r} is not a number; write e.g. <{tag.type}:{name}:0.8>",
                tag,
                text,
                label,
                "multiplier",
            ) from None
    return NetworkTag(kind, name, multiplier)


def extract_networks(text: str) -> tuple[str, list[NetworkTag]]:
    """(text_without_tags, [(type, name, multiplier), ...]) in prompt order.

    The text is exactly what the webui sends on (every `<word:…>` match removed, nothing
    around it touched). Unlike the webui, a tag that cannot be honoured raises PromptError
    at the tag's position instead of being skipped silently: an unknown type, an empty
    name, a multiplier that is not a finite number, lora arguments we do not implement,
    or the same type and name twice. Names are stripped of surrounding whitespace.
    """
    return _extract(text, None, {})


def _extract(text: str, label: str | None, seen: dict) -> tuple[str, list[NetworkTag]]:
    networks = []
    for tag in find_tags(text):
        network = network_of(tag, text, label)
        key = (network.type, network.name)
        if key in seen:
            first_network, first_position, first_label = seen[key]
            if first_label == label or first_network.multiplier != network.multiplier:
                raise _error(
                    f"{network.type} {network.name!r} is tagged twice ({_where(first_position, first_label)} "
                    f"and {_where(tag.start, label)}); tag it once with the multiplier you want",
                    tag,
                    text,
                    label,
                )
            continue  # the same tag in the prompt and the negative prompt: one network
        seen[key] = (network, tag.start, label)
        networks.append(network)
    stripped, _ = remove_tags(text)
    return stripped, networks


def extract_networks_pair(prompt: str, negative_prompt: str, negative: str = "apply"):
    """The "negative prompt too" rule: (prompt_text, negative_text, networks).

    negative="apply" (ours, the default): tags are taken out of both prompts and their
    networks activated (a hypernetwork acts on both guidance branches anyway); a network
    tagged in both with the same multiplier counts once, with different multipliers it is
    an error. "remove": tags in the negative prompt are taken out but ignored. "keep": the
    negative prompt is left as it is and its tags are read as plain text, which is what
    the webui does.
    """
    if negative not in NEGATIVE_MODES:
        raise PromptError(f"negative must be one of {', '.join(NEGATIVE_MODES)}, got {negative!r}")
    seen: dict = {}
    prompt_text, networks = _extract(prompt, None, seen)
    if negative == "keep":
        return prompt_text, negative_prompt, networks
    if negative == "remove":
        return prompt_text, remove_tags(negative_prompt)[0], networks
    negative_text, negative_networks = _extract(negative_prompt, "negative prompt", seen)
    return prompt_text, negative_text, networks + negative_networks
