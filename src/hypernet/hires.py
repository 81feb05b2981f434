"""The hires fix's middle step: first-pass latents to the second pass's size, with the
webui's upscalers that need no model: the latent ones (torch interpolation of the
latents) and plain resampling of the decoded picture ("Lanczos", "Nearest", "None")."""

from __future__ import annotations

import torch

from .latents import decode, encode
from .request import LATENT_UPSCALERS, HiresFix


def upscale(pipe, latents: torch.Tensor, settings: HiresFix, width: int, height: int) -> torch.Tensor:
    """`latents` [B, C, h, w] as latents of a width x height picture. When the target's
    aspect differs from the first pass's (both hires sizes given), the centre is cropped
    first, as the webui's "crop and resize"."""
    factor = pipe.vae_scale_factor
    if settings.upscaler in LATENT_UPSCALERS:
        mode, antialias = LATENT_UPSCALERS[settings.upscaler]
        cropped = _crop_to_aspect(latents, width, height)
        return torch.nn.functional.interpolate(cropped, size=(height // factor, width // factor), mode=mode,
                                               antialias=antialias)
    from PIL import Image, ImageOps

    resample = Image.NEAREST if settings.upscaler == "Nearest" else Image.LANCZOS
    pictures = [ImageOps.fit(picture, (width, height), method=resample) for picture in decode(pipe, latents)]
    return encode(pipe, pictures).to(latents.dtype)


def _crop_to_aspect(latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    rows, columns = latents.shape[-2:]
    if abs(columns / rows - width / height) < 1e-6:
        return latents
    if columns / rows > width / height:  # too wide: keep the middle columns
        keep = max(1, round(rows * width / height))
        left = (columns - keep) // 2
        return latents[..., left:left + keep]
    keep = max(1, round(columns * height / width))
    top = (rows - keep) // 2
    return latents[..., top:top + keep, :]
