"""Text conditioning for training, through the pipeline's own `encode_prompt` (the same
code generation uses, so a trained network sees at training time exactly what it sees
when it is used).

When prompts are fixed per image (no tag shuffling or dropout) every distinct prompt is
encoded once before the first step and the text encoder leaves the accelerator. When they
vary, encodings are computed per step and the most recent ones are kept (a bounded LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch


class TextConditioning:
    """Prompt -> text-encoder hidden states [tokens, width], cached on the CPU."""

    def __init__(self, pipe, cache_size: int):
        self.pipe = pipe
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.pinned: set[str] = set()
        self.encoded = 0  # how many prompts went through the text encoder

    @property
    def device(self) -> torch.device:
        return next(self.pipe.text_encoder.parameters()).device

    @torch.no_grad()
    def _encode(self, prompts: Sequence[str]) -> torch.Tensor:
        embeddings, _ = self.pipe.encode_prompt(list(prompts), self.device, 1, False)
        self.encoded += len(prompts)
        return embeddings.cpu()

    def precompute(self, prompts: Sequence[str], batch_size: int = 16) -> None:
        """Encode these prompts now and keep them for the whole run."""
        distinct = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for start in range(0, len(distinct), batch_size):
            chunk = distinct[start:start + batch_size]
            for prompt, embedding in zip(chunk, self._encode(chunk)):
                self._cache[prompt] = embedding
        self.pinned.update(prompts)

    def __call__(self, prompts: Sequence[str], device, dtype) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            for prompt, embedding in zip(missing, self._encode(missing)):
                self._cache[prompt] = embedding
        for prompt in prompts:
            self._cache.move_to_end(prompt)
        result = torch.stack([self._cache[p] for p in prompts]).to(device=device, dtype=dtype)
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
