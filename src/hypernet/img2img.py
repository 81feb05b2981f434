"""img2img and inpainting around the denoising loop: the init picture and mask made
ready as the webui makes them (resize mode, mask blur, "only masked" crop, masked
content), encoded to the loop's `Start`, and the decoded pictures finished (pasted back
into the original, the unmasked area laid over from the init picture).

The pixel work is in `img2img_images`; this module adds the latents (`hypernet.latents`
says how pictures are encoded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import img2img_images as pictures
from .latents import encode, encode_tensor
from .request import Img2Img
from .sampling import Start


@dataclass
class Prepared:
    """An init picture ready to encode, its latent mask, and how to finish a result."""

    image: object  # PIL RGB, width x height
    mask: object | None  # PIL L at width x height (white = repaint), blurred
    finish: Callable[[object], object]


def prepare(settings: Img2Img, width: int, height: int) -> Prepared:
    """The webui's two inpaint areas: the whole picture resized to width x height, or
    ("only masked") the mask's surroundings cropped, worked on at width x height and
    pasted back into the original."""
    if settings.mask is None:
        return Prepared(pictures.resize_image(settings.image, width, height, settings.resize_mode), None,
                        lambda generated: generated)
    if settings.only_masked:
        image = pictures.resize_image(settings.image, settings.image.width, settings.image.height)  # flattened RGB
        mask = pictures.prepare_mask(settings.mask, image.width, image.height, blur=settings.mask_blur,
                                     invert=settings.invert_mask)
        region = pictures.masked_region(mask, settings.only_masked_padding, width, height)
        cropped, cropped_mask = pictures.crop_for_inpaint(image, mask, region, width, height)
        if settings.masked_content != "original":
            cropped = pictures.fill_masked(cropped, cropped_mask)
        return Prepared(cropped, cropped_mask, lambda generated: pictures.paste_back(image, generated, region, mask))
    image = pictures.resize_image(settings.image, width, height, settings.resize_mode)
    mask = pictures.prepare_mask(settings.mask, width, height, blur=settings.mask_blur, invert=settings.invert_mask,
                                 resize_mode=settings.resize_mode)
    overlay = pictures.overlay_mask(mask)
    encoded = pictures.fill_masked(image, mask) if settings.masked_content != "original" else image
    return Prepared(encoded, mask, lambda generated: pictures.apply_overlay(generated, image, overlay))


def start(pipe, prepared: Prepared, settings: Img2Img, count: int, noise: torch.Tensor,
          strength: float | None = None) -> Start:
    """The loop's `Start` for `count` images of one prepared picture. `noise` [B, C, h, w]
    fills the masked area for "latent noise"."""
    latents = encode(pipe, [prepared.image]).repeat(count, 1, 1, 1)
    strength = settings.denoising_strength if strength is None else strength
    mask = None
    if prepared.mask is not None:
        mask = latent_mask(prepared.mask, latents.shape[-1], latents.shape[-2]).to(latents)
        if settings.masked_content == "latent noise":
            latents = latents * (1 - mask) + noise.to(latents) * mask
        elif settings.masked_content == "latent nothing":
            latents = latents * (1 - mask)
    return Start(latents, strength, mask)


def latent_mask(mask, width: int, height: int) -> torch.Tensor:
    """[1, 1, h, w] in {0, 1}: the blurred mask at latent size, rounded as the webui does."""
    return torch.from_numpy(pictures.latent_mask(mask, width, height))[None, None]


def inpaint_condition(pipe, prepared: Prepared | None, count: int, size: tuple[int, int] | None = None):
    """What an inpainting UNet (9 input channels) takes besides the latents: the mask at
    latent size and the latents of the picture with the masked area blanked. Without a
    mask the whole picture is repainted; without a picture (txt2img) it is mid-grey, as
    the webui does. None for ordinary UNets."""
    if pipe.unet.config.in_channels == pipe.vae.config.latent_channels:
        return None
    from PIL import Image

    if prepared is None:
        image = Image.new("RGB", size, (127, 127, 127))
        mask = Image.new("L", size, 255)
    else:
        image = prepared.image
        mask = prepared.mask if prepared.mask is not None else Image.new("L", image.size, 255)
    repaint = torch.from_numpy((np.asarray(mask, dtype=np.float32) / 255 >= 0.5).astype(np.float32))
    pixels = pipe.image_processor.preprocess(image) * (1 - repaint)
    latents = encode_tensor(pipe, pixels)
    small = torch.nn.functional.interpolate(repaint[None, None], size=latents.shape[-2:])
    return torch.cat([small.to(latents), latents], dim=1).repeat(count, 1, 1, 1)
