"""Live previews of sampling: latents to a small RGB picture without running the VAE
decoder at every `/progress` call.

The map is a linear one (latent channels + bias -> RGB) fitted once per model to that
model's own VAE: a picture of random colour blocks is encoded, and least squares finds
the colours from the latents of each block. So it works for any latent space (SD 1.x,
SD 2.x, the embedded model) with no table of constants, and costs one VAE encode.
"""

from __future__ import annotations

import torch


class LatentPreview:
    def __init__(self, matrix: torch.Tensor, scale: int = 8):
        self.matrix = matrix  # (channels + 1, 3)
        self.scale = scale  # pixels per latent cell: the preview is never bigger than the picture

    @classmethod
    def fit(cls, vae, blocks: int = 12, seed: int = 0) -> "LatentPreview":
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        block_pixels = scale * 2
        generator = torch.Generator("cpu").manual_seed(seed)
        colours = torch.rand(blocks * blocks, 3, generator=generator)
        image = colours.T.reshape(3, blocks, blocks)
        image = image.repeat_interleave(block_pixels, 1).repeat_interleave(block_pixels, 2)[None] * 2 - 1
        parameter = next(vae.parameters())
        with torch.no_grad():
            encoded = vae.encode(image.to(parameter.device, parameter.dtype)).latent_dist.mean.float().cpu()
        encoded = encoded * float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        # the centre latent cells of each block (edges mix neighbouring colours)
        cells = encoded[0, :, 0::2, 0::2][:, :blocks, :blocks].reshape(encoded.shape[1], -1).T
        inputs = torch.cat([cells, torch.ones(len(cells), 1)], dim=1)
        matrix = torch.linalg.lstsq(inputs, colours * 2 - 1).solution
        return cls(matrix, scale)

    def image(self, latents: torch.Tensor, index: int = 0, max_side: int = 512):
        """A PIL image of one latent of a batch, upscaled to at most `max_side` pixels."""
        from PIL import Image

        latent = latents[index].detach().float().cpu()
        flat = latent.reshape(latent.shape[0], -1).T
        rgb = torch.cat([flat, torch.ones(len(flat), 1)], dim=1) @ self.matrix
        rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        picture = Image.fromarray(rgb.reshape(latent.shape[1], latent.shape[2], 3).numpy())
        factor = max(1, min(max_side, max(picture.size) * self.scale) // max(picture.size))
        return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
