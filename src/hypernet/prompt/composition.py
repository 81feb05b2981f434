"""The two steps the webui takes on a prompt besides tags, editing and emphasis: comment
removal (before everything) and `AND` composition (positive prompt only, before editing)."""

from __future__ import annotations

import re

_WHOLE_LINE_COMMENT = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_COMMENT = re.compile(r"#[^\n]*(\n|$)")
_AND = re.compile(r"\bAND\b")
# A sub-prompt's text, then an optional ':weight' with nothing but whitespace after it.
_SUBPROMPT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def strip_comments(text: str) -> str:
    """Remove `#` comments the way webui >= 1.8 does by default (option "Enable comments"):
    a whole comment line goes with its line break; a comment after text is replaced by a
    line break. Run it before everything else, on both prompts."""
    text = _WHOLE_LINE_COMMENT.sub("\n", text)
    return _COMMENT.sub("\n", text)


def split_and(text: str) -> list[tuple[str, float]]:
    """Composable-diffusion parts of a positive prompt: [(text, weight), ...].

    The webui splits the positive prompt on the word AND and reads a trailing `:number`
    of each part as that part's guidance weight (default 1.0), dropping trailing
    whitespace. This applies even without AND: `a cat:1.5` is the text `a cat` with
    weight 1.5. Each part then gets its own schedule and conditioning. The negative
    prompt is never split.
    """
    parts = []
    for part in _AND.split(text):
        match = _SUBPROMPT.search(part)
        body, weight = match.groups()
        parts.append((body, float(weight) if weight is not None else 1.0))
    return parts
