"""Prompts as the AUTOMATIC1111 webui v1.10.1 reads them: extra-network tags, emphasis,
prompt editing and alternation, and (in `hypernet.prompt.conditioning`, which needs torch)
the text-encoder conditioning built from them.

The webui's order, which a pipeline should follow for each prompt:

1. `strip_comments` (both prompts);
2. `extract_networks` (the webui: positive prompt only; `extract_networks_pair` applies
   our "negative prompt too" rule);
3. `split_and` (positive prompt only) -> parts with guidance weights;
4. `schedule(part, steps)` -> [(until_step, text), ...];
5. `parse_emphasis(text)` for each scheduled text (done inside the conditioning builder).

Importing this package does not import torch.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from .check import PromptWarning, check
from .composition import split_and, strip_comments
from .editing import schedule
from .emphasis import parse_emphasis
from .networks import (
    NETWORK_TYPES,
    NetworkTag,
    TagMatch,
    closest_names,
    extract_networks,
    extract_networks_pair,
    find_tags,
)
from .report import explain_prompt

# Torch-backed names, resolved on first use so that `import hypernet.prompt` stays light.
_LAZY = {
    name: ("hypernet.prompt.conditioning", name)
    for name in ("PromptEncoder", "conditioning_at", "stack_conds", "pad_cond_uncond", "pad_cond_uncond_v0")
}

__all__ = [
    "NETWORK_TYPES",
    "NetworkTag",
    "PromptWarning",
    "TagMatch",
    "check",
    "closest_names",
    "explain_prompt",
    "extract_networks",
    "extract_networks_pair",
    "find_tags",
    "parse_emphasis",
    "schedule",
    "split_and",
    "strip_comments",
    *_LAZY,
]


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
