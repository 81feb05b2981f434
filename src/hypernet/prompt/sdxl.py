"""Text conditioning the way the webui v1.10.1 builds it for SDXL.

SDXL reads two text encoders: CLIP ViT-L (768 wide) and OpenCLIP ViT-bigG (1280 wide).
The webui wraps each in the same prompt machinery as SD 1.x (emphasis, 75-token chunks,
BREAK, comma backtracking; `PromptEncoder`), each with its own weighting and mean
restoration, and concatenates their penultimate hidden states to the 2048-wide context
the UNet's cross-attention reads. Besides the context the UNet takes a vector: bigG's
pooled output of the prompt's *first* chunk (unweighted) and the size conditioning
(original size, crop, target size) as `time_ids`; diffusers' UNet embeds both itself
(`added_cond_kwargs`).

An empty negative prompt is all zeros, context and pooled alike (the webui's
`force_zero_embeddings`, diffusers' `force_zeros_for_empty_prompt`).

Clip skip: the webui ignores it on SDXL unless its option `sdxl_clip_l_skip` is on; then
CLIP-L reads hidden state -clip_skip (so 2 is the default penultimate layer) and bigG
stays penultimate. `SDXLPromptEncoder` does that: clip_skip 1 and 2 are the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import HypernetConfigError, PromptError
from .composition import split_and
from .conditioning import PromptEncoder
from .editing import schedule as text_schedule


@dataclass(frozen=True)
class DualConditioning:
    """One SDXL encoding: the context cross-attention reads ([T, 2048], or [B, T, 2048]
    for a batch) and the pooled vector ([1280], or [B, 1280])."""

    context: torch.Tensor
    pooled: torch.Tensor

    def __getitem__(self, row) -> "DualConditioning":
        return DualConditioning(self.context[row], self.pooled[row])

    def to(self, *args, **kwargs) -> "DualConditioning":
        return DualConditioning(self.context.to(*args, **kwargs), self.pooled.to(*args, **kwargs))

    @property
    def shape(self):
        """The context's shape (what code that pads or counts tokens reads)."""
        return self.context.shape


def is_sdxl_pipeline(pipe) -> bool:
    """A pipeline whose UNet takes the SDXL vector (pooled text and size conditioning)."""
    return getattr(pipe.unet.config, "addition_embed_type", None) == "text_time"


def time_ids(height: int, width: int, crop_top: int = 0, crop_left: int = 0,
             original: tuple[int, int] | None = None) -> torch.Tensor:
    """[6]: original size (h, w), crop top-left (top, left), target size (h, w); the
    webui passes the image size as both sizes and its crop options (default 0, 0)."""
    original = original or (height, width)
    return torch.tensor([*original, crop_top, crop_left, height, width], dtype=torch.float32)


class SDXLPromptEncoder:
    """The webui's SDXL conditioning over a pipeline's two tokenizers and text encoders;
    the same interface as `PromptEncoder`, with `DualConditioning` for tensors."""

    def __init__(self, tokenizer, text_encoder, tokenizer_2, text_encoder_2, *, clip_skip: int = 1,
                 comma_padding_backtrack: int = 20, emphasis: str = "original"):
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
            raise HypernetConfigError(f"clip_skip must be a whole number of at least 1, got {clip_skip!r}")
        layers = text_encoder.config.num_hidden_layers + 1
        if clip_skip > layers:
            raise HypernetConfigError(f"clip_skip {clip_skip} is more than the text encoder's {layers} states")
        options = {"comma_padding_backtrack": comma_padding_backtrack, "emphasis": emphasis}
        self.clip_skip = clip_skip
        self.encoders = (
            PromptEncoder(tokenizer, text_encoder, hidden_layer=-max(2, clip_skip), **options),
            PromptEncoder(tokenizer_2, text_encoder_2, hidden_layer=-2, **options),
        )
        self._empty = None

    def fingerprint(self) -> tuple:
        return ("sdxl",) + tuple(encoder.fingerprint() for encoder in self.encoders)

    def chunks(self, text: str):
        """The first encoder's chunks (both encoders chunk alike: one vocabulary)."""
        return self.encoders[0].chunks(text)

    def encode(self, texts) -> DualConditioning:
        """Context [B, T, 2048] and pooled [B, 1280] for a list of texts, one webui batch."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise PromptError("encode needs at least one text")
        first = self.encoders[0].encode(texts)
        second, pooled = self.encoders[1].encode_pooled(texts)
        return DualConditioning(torch.cat([first, second], dim=-1), pooled)

    def empty(self) -> DualConditioning:
        """The empty prompt's encoding [1, 77, 2048] (padding for prompts of fewer chunks)."""
        if self._empty is None:
            self._empty = self.encode("")
        return self._empty

    def zeros(self) -> DualConditioning:
        """What an empty negative prompt conditions on: zeros of the empty prompt's shapes."""
        empty = self.empty()
        return DualConditioning(torch.zeros_like(empty.context[0]), torch.zeros_like(empty.pooled[0]))

    def encode_schedule(self, scheduled) -> list[tuple[int, DualConditioning]]:
        scheduled = list(scheduled)
        encoded = self.encode([text for _, text in scheduled])
        return [(until, encoded[row]) for row, (until, _) in enumerate(scheduled)]

    def conditioning(self, text: str, steps: int,
                     first_pass_steps: int | None = None) -> list[tuple[int, DualConditioning]]:
        return self.encode_schedule(text_schedule(text, steps, first_pass_steps))

    def negative_conditioning(self, text: str, steps: int,
                              first_pass_steps: int | None = None) -> list[tuple[int, DualConditioning]]:
        """The negative prompt's schedule; all zeros when every scheduled text is empty."""
        scheduled = list(text_schedule(text, steps, first_pass_steps))
        if all(part == "" for _, part in scheduled):
            return [(until, self.zeros()) for until, _ in scheduled]
        return self.encode_schedule(scheduled)

    def composable_conditioning(self, text: str, steps: int,
                                first_pass_steps: int | None = None) -> list[tuple[float, list]]:
        return [(weight, self.conditioning(part, steps, first_pass_steps)) for part, weight in split_and(text)]
