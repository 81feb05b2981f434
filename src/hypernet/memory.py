"""How much memory a generation request needs, checked before any of it is allocated.

Without this a `--size 100000x100000` or `--batch-size 10000` request allocates until
the allocator fails, tens of seconds later, with a traceback. The estimate is read from
the loaded pipeline's configuration and its attention processors, never from a run:

* the UNet's activations: the skip connections the down path keeps for the up path, and
  the largest working set of one level (a transformer block's feed-forward is the widest
  tensor), for every row of the UNet's batch (twice the batch size under CFG);
* self-attention scores, quadratic in the tokens of a level, where the attention
  processor materialises them (diffusers' classic `AttnProcessor`); SDPA
  (`AttnProcessor2_0`, diffusers' default) and xformers run memory-efficient kernels
  whose memory grows linearly, as measured (`benchmarks/memory_estimate.py`);
* the VAE decode, at full resolution for the whole batch at once, as the pipeline does;
* the latents, the noise and the decoded pictures on their way to PIL.

The sum is multiplied by a margin (`MARGIN`, for allocator slack and what the formulas
leave out) and compared with what the device has free now: available RAM on a CPU,
`torch.cuda.mem_get_info` plus torch's reusable cache on CUDA. `MemoryLimit` sets
another bound or turns the check off. Measured against real peaks in docs/benchmarks.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from .errors import HypernetError

MARGIN = 1.5  # the sum x MARGIN must fit; measured peaks were 1.4-2.5x below that (docs/benchmarks.md)
FEED_FORWARD_WIDTH = 18  # channels alive at once in a transformer block's GEGLU feed-forward, per channel
RESNET_WIDTH = 8  # channels alive at once in a resnet on the up path (concatenated skip input), per channel
VAE_WIDTH = 6  # channels alive at once in a VAE decoder resnet or upsampler, per channel of its widest side
TEXT_TOKENS = 77
_EFFICIENT_PROCESSORS = ("2_0", "XFormers", "Flash", "NPU")  # class-name marks of linear-memory attention


class MemoryLimitError(HypernetError):
    """A request needs more memory than the device has (or than the configured limit)."""


@dataclass(frozen=True)
class MemoryLimit:
    """The most memory one request may need: `limit_bytes` None means what the device has
    free when the request starts; `enabled` False turns the check off."""

    limit_bytes: int | None = None
    enabled: bool = True


@dataclass
class Estimate:
    """Bytes a request needs at its peak, and the parts it is made of (for messages)."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return int(sum(self.parts.values()) * MARGIN)

    def largest(self) -> str:
        return max(self.parts, key=self.parts.get)


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}


def parse_memory_limit(text: str) -> MemoryLimit:
    """`auto` (what the device has free), `off` (no check) or a size such as `24G`,
    `1.5GiB`, `800MB` (units are powers of 1024)."""
    value = str(text).strip().lower()
    if value in ("auto", ""):
        return MemoryLimit()
    if value in ("off", "none", "no"):
        return MemoryLimit(enabled=False)
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([kmgtp]?)(?:i?b)?", value)
    if not match or float(match[1]) <= 0 or not math.isfinite(float(match[1])):
        raise HypernetError(f"memory limit {text!r} must be a size such as 24G, 1.5GiB or 800M, or auto, or off")
    return MemoryLimit(limit_bytes=int(float(match[1]) * _UNITS[match[2]]))


def human_bytes(count: float) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def available_bytes(device) -> int | None:
    """Free memory on `device` now, or None where it cannot be told (then only an
    explicit limit is checked)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def estimate(pipe, width: int, height: int, batch_size: int, cfg_scale: float) -> Estimate:
    """What generating `batch_size` pictures of `width` x `height` with `pipe` needs at its peak."""
    unet, vae = pipe.unet, pipe.vae
    scale = pipe.vae_scale_factor
    rows = batch_size * (2 if cfg_scale > 1 else 1)  # cond and uncond go through the UNet together
    latent_h, latent_w = math.ceil(height / scale), math.ceil(width / scale)
    unet_bytes = _element_bytes(unet)
    vae_bytes = _element_bytes(vae)
    parts = {
        "latents and noise": 4 * batch_size * unet.config.in_channels * latent_h * latent_w * (4 + 3 * unet_bytes),
        "UNet activations": rows * unet_bytes * _unet_elements(unet.config, latent_h, latent_w),
        "UNet attention scores": rows * _attention_bytes(unet, latent_h, latent_w, unet_bytes, unet_levels(unet.config)),
        "VAE decode": batch_size * (vae_bytes * _vae_elements(vae.config, latent_h, latent_w)
                                    + _attention_bytes(vae, latent_h, latent_w, vae_bytes, 1)),
        "pictures": batch_size * 3 * width * height * (3 * 4 + 2),  # float32 copies, then 8-bit
    }
    # the UNet's activations are freed before the VAE decodes: the peak is the larger
    sampling = parts["UNet activations"] + parts["UNet attention scores"]
    decoding = parts["VAE decode"] + parts["pictures"]
    if sampling >= decoding:
        parts["VAE decode"] = parts["pictures"] = 0
    else:
        parts["UNet activations"] = parts["UNet attention scores"] = 0
    return Estimate({name: int(value) for name, value in parts.items() if value})


def check(pipe, width: int, height: int, batch_size: int, cfg_scale: float, limit: MemoryLimit | None = None) -> Estimate | None:
    """Raise `MemoryLimitError` when the request would need more than `limit` allows,
    saying how much it needs and how much there is."""
    limit = limit or MemoryLimit()
    if not limit.enabled:
        return None
    device = pipe.unet.device
    have = limit.limit_bytes if limit.limit_bytes is not None else available_bytes(device)
    if have is None:
        return None
    need = estimate(pipe, width, height, batch_size, cfg_scale)
    if need.bytes > have:
        there = (f"the memory limit is {human_bytes(have)}" if limit.limit_bytes is not None
                 else f"{device} has {human_bytes(have)} free")
        raise MemoryLimitError(
            f"{width}x{height}, batch size {batch_size} needs about {human_bytes(need.bytes)} of memory "
            f"(mostly {need.largest()}), but {there}: lower the size or the batch size (batch count costs no "
            "memory), or change the limit (--max-memory; off skips this check)")
    return need


def unet_levels(config) -> int:
    return len(config.block_out_channels)


def _element_bytes(model) -> int:
    return torch.tensor([], dtype=model.dtype).element_size()


def _tokens(latent_h: int, latent_w: int, level: int) -> int:
    return math.ceil(latent_h / 2**level) * math.ceil(latent_w / 2**level)


def _unet_elements(config, latent_h: int, latent_w: int) -> int:
    """Per row of the UNet's batch: the skip connections kept, plus the widest level."""
    channels = list(config.block_out_channels)
    layers = config.layers_per_block if isinstance(config.layers_per_block, int) else max(config.layers_per_block)
    skips = channels[0] * _tokens(latent_h, latent_w, 0)
    widest = 0
    for level, width in enumerate(channels):
        tokens = _tokens(latent_h, latent_w, level)
        skips += layers * width * tokens
        if level + 1 < len(channels):
            skips += width * _tokens(latent_h, latent_w, level + 1)
        has_attention = "Attn" in str(config.down_block_types[level])
        widest = max(widest, (FEED_FORWARD_WIDTH if has_attention else 0) * width * tokens,
                     RESNET_WIDTH * width * tokens)
    return skips + widest


def _vae_elements(config, latent_h: int, latent_w: int) -> int:
    """Per picture: the decoder's widest resolution step (channels x pixels)."""
    channels = list(reversed(config.block_out_channels))
    widest = 0
    for level, width in enumerate(channels):
        pixels = latent_h * latent_w * 4**level
        incoming = channels[level - 1] if level else width  # upsampled from the level before
        widest = max(widest, max(width, incoming) * pixels)
    return VAE_WIDTH * widest


def _attention_bytes(model, latent_h: int, latent_w: int, element_bytes: int, levels: int) -> int:
    """Per row: the largest score matrix a non-memory-efficient processor materialises
    (scores and probabilities together; fp32 where the layer upcasts)."""
    from diffusers.models.attention_processor import Attention

    largest = 0
    for name, module in model.named_modules():
        if not isinstance(module, Attention) or _efficient(module.processor):
            continue
        level = _level(name, levels)
        queries = _tokens(latent_h, latent_w, level)
        keys = TEXT_TOKENS if module.is_cross_attention else queries
        score_bytes = 4 if module.upcast_attention or module.upcast_softmax else element_bytes
        largest = max(largest, module.heads * queries * keys * (2 * score_bytes + element_bytes))
    return largest


def _efficient(processor) -> bool:
    name = processor.__class__.__name__  # the hypernetwork wrapper's __class__ is its base's
    return any(mark in name for mark in _EFFICIENT_PROCESSORS)


def _level(name: str, levels: int) -> int:
    """The resolution level of a module from its name (0 = full latent resolution)."""
    match = re.match(r"(?:\w+\.)?(down_blocks|up_blocks)\.(\d+)\.", name)
    if match:
        index = int(match[2])
        return index if match[1] == "down_blocks" else max(levels - 1 - index, 0)
    if "mid_block" in name:
        return levels - 1
    return 0
