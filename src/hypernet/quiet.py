"""Library warnings a user cannot act on, kept off the terminal.

transformers 5 warns once per image-processor class that torchvision is missing when
diffusers' Stable Diffusion pipeline module names `CLIPImageProcessor` (and the Siglip
one): hypernet never uses image processors (no safety checker), so the warning says
nothing true about a run. Resolving the names once with transformers' logging at error
level takes the (PIL) fallback silently; every other warning is left alone.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

IMAGE_PROCESSORS = ("CLIPImageProcessor", "SiglipImageProcessor")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' logging at error level inside the block, as it was after it."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def resolve_image_processors_quietly() -> None:
    import transformers

    with quiet_transformers():
        for name in IMAGE_PROCESSORS:
            getattr(transformers, name, None)
