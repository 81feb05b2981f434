"""Everything the package reads from one prompt, in one plain structure (for the CLI and
for anyone who wants to show a user what their prompt does)."""

from __future__ import annotations

from ..errors import PromptError
from .check import check
from .composition import split_and
from .editing import schedule
from .emphasis import parse_emphasis
from .networks import extract_networks, remove_tags

DEFAULT_STEPS = 20  # the webui's default sampling steps


def explain_prompt(text: str, steps: int | None = None, positive: bool = True) -> dict:
    """A JSON-ready description of how `text` is read.

    Keys: warnings (position, code, message), networks ([type, name, multiplier]) or
    network_error (the PromptError extract_networks raises), text (tags removed), steps,
    parts (one per AND part for a positive prompt; each with its guidance weight and its
    schedule, every scheduled text with its weighted segments). Comments are not removed
    (check() points them out).
    """
    schedule_steps = DEFAULT_STEPS if steps is None else steps
    result = {"warnings": [vars(warning) for warning in check(text, steps)]}
    try:
        stripped, networks = extract_networks(text)
        result["networks"] = [list(network) for network in networks]
    except PromptError as error:
        stripped = remove_tags(text)[0]
        result["network_error"] = str(error)
    result["text"] = stripped
    result["steps"] = schedule_steps
    parts = split_and(stripped) if positive else [(stripped, 1.0)]
    result["parts"] = [
        {
            "text": part,
            "weight": weight,
            "schedule": [
                {
                    "until": until,
                    "text": scheduled,
                    "segments": [list(segment) for segment in parse_emphasis(scheduled)],
                }
                for until, scheduled in schedule(part, schedule_steps)
            ],
        }
        for part, weight in parts
    ]
    return result
