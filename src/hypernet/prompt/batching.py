"""Encoded prompts put together for one UNet batch: the encoding a step uses from a
prompt's schedule, and the webui's ways of bringing encodings of different token lengths
to one length (repeat the last vector, or append the empty prompt's encoding)."""

from __future__ import annotations

import torch


def conditioning_at(scheduled, step: int) -> torch.Tensor:
    """The tensor for the denoiser call `step` (0-based): the first entry whose until_step
    is >= step. Past the last entry the webui falls back to the *first* entry; so do we."""
    for until, cond in scheduled:
        if step <= until:
            return cond
    return scheduled[0][1]


def stack_conds(tensors) -> torch.Tensor:
    """Stack [T_i, C] tensors into [B, T, C], repeating each one's last vector up to the
    longest (the webui's way for a batch of prompts of different lengths)."""
    length = max(tensor.shape[0] for tensor in tensors)
    padded = []
    for tensor in tensors:
        if tensor.shape[0] < length:
            tensor = torch.vstack([tensor, tensor[-1:].repeat([length - tensor.shape[0], 1])])
        padded.append(tensor)
    return torch.stack(padded)


def _pad_with_empty(z: torch.Tensor, length: int, empty: torch.Tensor) -> torch.Tensor:
    """[B, T, C] -> [B, length, C] by appending copies of `empty` [1, 77, C]."""
    repeats = (length - z.shape[1]) // empty.shape[1]
    if repeats <= 0:
        return z
    return torch.cat([z, empty.to(device=z.device, dtype=z.dtype).repeat((z.shape[0], repeats, 1))], dim=1)


def pad_cond_uncond(cond: torch.Tensor, uncond: torch.Tensor, empty: torch.Tensor):
    """The webui option `pad_cond_uncond` ("Pad prompt/negative prompt"): the shorter of
    [B, T, C] cond / uncond gets copies of the empty prompt's encoding `empty` [1, 77, C]
    appended until both have the same length. The webui's default when the lengths
    differ is *not* to pad but to run cond and uncond through the UNet in separate calls."""
    if empty.dim() == 2:
        empty = empty.unsqueeze(0)
    length = max(cond.shape[1], uncond.shape[1])
    return _pad_with_empty(cond, length, empty), _pad_with_empty(uncond, length, empty)


def stack_padded(tensors, empty: torch.Tensor) -> torch.Tensor:
    """Stack [T_i, C] encodings into [B, T, C], the shorter ones padded with copies of
    the empty prompt's encoding `empty` ([77, C] or [1, 77, C]) as `pad_cond_uncond` pads."""
    if empty.dim() == 2:
        empty = empty.unsqueeze(0)
    length = max(tensor.shape[0] for tensor in tensors)
    return torch.cat([_pad_with_empty(tensor.unsqueeze(0), length, empty) for tensor in tensors])


def pad_cond_uncond_v0(cond: torch.Tensor, uncond: torch.Tensor):
    """The webui option `pad_cond_uncond_v0` (the padding DDIM always used before 1.6):
    uncond's last vector is repeated up to cond's length, or uncond is cut to it."""
    if uncond.shape[1] < cond.shape[1]:
        last = uncond[:, -1:]
        uncond = torch.hstack([uncond, last.repeat([1, cond.shape[1] - uncond.shape[1], 1])])
    elif uncond.shape[1] > cond.shape[1]:
        uncond = uncond[:, : cond.shape[1]]
    return cond, uncond
