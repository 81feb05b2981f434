"""Text conditioning for training, through the `PromptEncoder` generation uses (emphasis,
75-token chunks, BREAK, clip skip, textual-inversion embeddings), so a trained network
sees at training time exactly what it sees when it is used. The webui trains through
its generation text-encoder wrapper as well.

Every prompt is encoded on its own, as generation encodes a prompt, so a cached encoding
does not depend on which other prompts shared its batch. A batch whose prompts have
different chunk counts is padded with the empty prompt's encoding, the way generation
pads the shorter of prompt and negative prompt (`pad_cond_uncond`).

When prompts are fixed per image (no tag shuffling or dropout) every distinct prompt is
encoded once before the first step and the text encoder leaves the accelerator. When they
vary, encodings are computed per step and the most recent ones are kept (a bounded LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch

from ..prompt.conditioning import PromptEncoder, stack_padded
from ..prompt.sdxl import DualConditioning


def prompt_encoder(pipe, clip_skip: int = 1, embeddings_dir=None, log=None) -> PromptEncoder:
    """The encoder a `Generator(pipe, clip_skip=..., embeddings_dir=...)` would use (for SDXL
    the two-encoder `SDXLPromptEncoder`: context and pooled vector)."""
    from ..extra_networks import load_embeddings
    from ..prompt.sdxl import SDXLPromptEncoder, is_sdxl_pipeline

    if is_sdxl_pipeline(pipe):
        if embeddings_dir is not None and log is not None and Path(embeddings_dir).is_dir():
            log("textual-inversion embeddings are not read for SDXL models yet; the folder is ignored")
        return SDXLPromptEncoder(pipe.tokenizer, pipe.text_encoder, pipe.tokenizer_2, pipe.text_encoder_2,
                                 clip_skip=clip_skip)

    embeddings, warnings = load_embeddings(embeddings_dir, pipe.text_encoder.config.hidden_size)
    for warning in warnings:
        if log is not None:
            log(warning)
    return PromptEncoder(pipe.tokenizer, pipe.text_encoder, clip_skip=clip_skip, embeddings=embeddings)


class TextConditioning:
    """Prompt -> text-encoder hidden states [tokens, width], cached on the CPU.

    Cache keys are (the encoder's fingerprint, prompt): its clip skip, emphasis mode,
    comma backtrack and embeddings are part of every key."""

    def __init__(self, encoder: PromptEncoder, cache_size: int):
        self.encoder = encoder
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._empty: torch.Tensor | None = None
        self.pinned: set[tuple] = set()
        self.encoded = 0  # how many prompts went through the text encoder

    def key(self, prompt: str) -> tuple:
        return (self.encoder.fingerprint(), prompt)

    @torch.no_grad()
    def _encode(self, prompt: str):
        if self._empty is None:
            self._empty = self.encoder.encode("")[0].to("cpu")
        self.encoded += 1
        return self.encoder.encode(prompt)[0].to("cpu")

    def _fill(self, prompts: Sequence[str]) -> None:
        for prompt in dict.fromkeys(prompts):
            key = self.key(prompt)
            if key not in self._cache:
                self._cache[key] = self._encode(prompt)

    def precompute(self, prompts: Sequence[str]) -> None:
        """Encode these prompts (and the empty prompt, for padding) now and keep them for
        the whole run."""
        self._fill([*prompts, ""])
        self.pinned.update(self.key(prompt) for prompt in prompts)

    def __call__(self, prompts: Sequence[str], device, dtype):
        """[B, T, C]: shorter prompts padded with the empty prompt's chunks (SDXL: a
        `DualConditioning` of that context and the pooled vectors [B, P])."""
        self._fill(prompts)
        keys = [self.key(prompt) for prompt in prompts]
        for key in keys:
            self._cache.move_to_end(key)
        encoded = [self._cache[key] for key in keys]
        if isinstance(self._empty, DualConditioning):
            result = DualConditioning(stack_padded([entry.context for entry in encoded], self._empty.context),
                                      torch.stack([entry.pooled for entry in encoded])).to(device=device, dtype=dtype)
        else:
            result = stack_padded(encoded, self._empty).to(device=device, dtype=dtype)
        self._trim()
        return result

    def _trim(self) -> None:
        while len(self._cache) > max(self.cache_size, len(self.pinned)):
            for key in self._cache:
                if key not in self.pinned:
                    del self._cache[key]
                    break
            else:
                return
