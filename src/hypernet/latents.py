"""Pictures to latents and back through the pipeline's VAE.

Encoding takes the mean of the VAE's latent distribution rather than a random sample
from it (the webui samples): a request then reproduces exactly, and img2img at
denoising strength 0 gives the picture back within the VAE's round trip."""

from __future__ import annotations

import torch


def encode(pipe, images) -> torch.Tensor:
    """Latents [B, C, h, w] of PIL pictures."""
    return encode_tensor(pipe, pipe.image_processor.preprocess(images))


def encode_tensor(pipe, pixels: torch.Tensor) -> torch.Tensor:
    """Latents of pixels [B, 3, H, W] in [-1, 1]."""
    vae = pipe.vae
    with torch.no_grad():
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def decode(pipe, latents: torch.Tensor, generators=None) -> list:
    """PIL pictures of latents, as the diffusers pipeline decodes them (its safety
    checker included, when the pipeline has one)."""
    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    scaled = latents / vae.config.scaling_factor
    if shift:
        scaled = scaled + shift
    # SDXL's VAE overflows in fp16 (its config says `force_upcast`): decode in fp32, as the
    # diffusers SDXL pipeline does, and hand the VAE back in its own dtype. (diffusers'
    # default for the flag is True, and its SD 1.x/2.x pipelines ignore it: so do we.)
    from .prompt.sdxl import is_sdxl_pipeline

    upcast = (is_sdxl_pipeline(pipe) and bool(getattr(vae.config, "force_upcast", False))
              and vae.dtype == torch.float16)
    with torch.no_grad():
        if upcast:
            torch.nn.Module.to(vae, dtype=torch.float32)
            try:
                image = vae.decode(scaled.float(), return_dict=False, generator=generators)[0]
            finally:
                torch.nn.Module.to(vae, dtype=torch.float16)
        else:
            image = vae.decode(scaled, return_dict=False, generator=generators)[0]
        flagged = None
        if getattr(pipe, "safety_checker", None) is not None:
            image, flagged = pipe.run_safety_checker(image, latents.device, latents.dtype)
    denormalize = [True] * image.shape[0] if flagged is None else [not f for f in flagged]
    return pipe.image_processor.postprocess(image, output_type="pil", do_denormalize=denormalize)
