"""Key tables between diffusers' module names and the original (CompVis / webui) single file.

One table serves both directions: loading reads each original tensor and turns it into
the diffusers tensor(s) it holds; exporting does the reverse with the same entries, so a
round trip cannot drift. Tables are built from the key list of a diffusers model and its
config, never from fixed SD 1.5 sizes, so any UNet2DConditionModel / AutoencoderKL /
CLIPTextModel of the Stable Diffusion shape (tiny test models included) has one.

The single file stores:
- the UNet under ``model.diffusion_model.`` (``input_blocks`` / ``middle_block`` /
  ``output_blocks``, resnets as ``in_layers`` / ``emb_layers`` / ``out_layers``);
- the VAE under ``first_stage_model.`` (``encoder.down.N.block.M``, decoder levels numbered
  from the bottom, mid-block attention as 1x1 convolutions ``q`` / ``k`` / ``v`` / ``proj_out``);
- the text encoder either as transformers' CLIP under ``cond_stage_model.transformer.text_model.``
  (SD 1.x, "sd1" layout) or as OpenCLIP under ``cond_stage_model.model.`` (SD 2.x, "sd2" layout:
  fused ``in_proj`` attention weights, one transformer block more than SD 2 uses, because
  SD 2 reads the penultimate block's output).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer.text_model."
SD1_TEXT_PREFIX_OLD = "cond_stage_model.transformer."  # transformers < 4.21 had no "text_model."
SD2_TEXT_PREFIX = "cond_stage_model.model."
LAYOUTS = ("sd1", "sd2")
COMPONENTS = ("unet", "vae", "text_encoder")

# The key whose second dimension is the cross-attention width (768: SD 1.x, 1024: SD 2.x).
CROSS_ATTENTION_PROBE = UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


# --- transforms: (to_diffusers, to_original), one signature each --------------------------


def _copy_to_diffusers(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (tensor,)


def _copy_to_original(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return tensors[0]


def _conv1x1_to_diffusers(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # The VAE's attention stores q/k/v/proj_out as 1x1 convolutions; diffusers as linears.
    return (tensor.reshape(tensor.shape[0], tensor.shape[1]),) if tensor.dim() == 4 else (tensor,)


def _conv1x1_to_original(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    tensor = tensors[0]
    return tensor.reshape(tensor.shape[0], tensor.shape[1], 1, 1)


def _fused_to_diffusers(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # OpenCLIP's nn.MultiheadAttention keeps q, k and v stacked in one in_proj tensor.
    if tensor.shape[0] % 3:
        raise ValueError(f"a fused q/k/v tensor needs a first dimension divisible by 3, not {tensor.shape[0]}")
    return tuple(part.clone() for part in tensor.chunk(3, dim=0))


def _fused_to_original(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat(list(tensors), dim=0)


def _transpose_to_diffusers(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (tensor.t().contiguous(),)


def _transpose_to_original(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return tensors[0].t().contiguous()


TRANSFORMS: dict[str, tuple[Callable, Callable]] = {
    "copy": (_copy_to_diffusers, _copy_to_original),
    "conv1x1": (_conv1x1_to_diffusers, _conv1x1_to_original),
    "fused_qkv": (_fused_to_diffusers, _fused_to_original),
    "transpose": (_transpose_to_diffusers, _transpose_to_original),
}


@dataclass(frozen=True)
class KeyPair:
    """One tensor of the single file and the diffusers tensor(s) of one component it holds."""

    original: str
    component: str
    diffusers: tuple[str, ...]
    transform: str = "copy"

    def to_diffusers(self, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return TRANSFORMS[self.transform][0](tensor)

    def to_original(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return TRANSFORMS[self.transform][1](tensors)


# --- UNet ------------------------------------------------------------------------------------

_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _resnet_name(rest: str) -> str:
    module, _, parameter = rest.partition(".")
    if module not in _RESNET_NAMES:
        raise KeyError(rest)
    return f"{_RESNET_NAMES[module]}.{parameter}"


def _per_block(value, count: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def _unet_original_name(key: str, config: Mapping) -> str:
    down_types = list(config["down_block_types"])
    up_types = list(config["up_block_types"])
    levels = len(down_types)
    layers = _per_block(config["layers_per_block"], levels)
    up_layers = list(reversed(layers))
    fixed = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    module, _, parameter = key.rpartition(".")
    if module in fixed:
        return f"{fixed[module]}.{parameter}"
    match = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", key)
    if match:
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        start = 1 + sum(layers[i] + 1 for i in range(level))
        if kind == "resnets":
            return f"input_blocks.{start + index}.0.{_resnet_name(rest)}"
        if kind == "attentions":
            return f"input_blocks.{start + index}.1.{rest}"
        return f"input_blocks.{start + layers[level]}.0.op.{rest.removeprefix('conv.')}"
    match = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if match:
        kind, index, rest = match[1], int(match[2]), match[3]
        if kind == "resnets":
            return f"middle_block.{2 * index}.{_resnet_name(rest)}"
        return f"middle_block.{2 * index + 1}.{rest}"
    match = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", key)
    if match:
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        start = sum(up_layers[i] + 1 for i in range(level))
        if kind == "resnets":
            return f"output_blocks.{start + index}.0.{_resnet_name(rest)}"
        if kind == "attentions":
            return f"output_blocks.{start + index}.1.{rest}"
        slot = 2 if up_types[level].startswith("CrossAttn") else 1
        return f"output_blocks.{start + up_layers[level]}.{slot}.{rest}"
    raise KeyError(key)


def unet_pairs(diffusers_keys: Iterable[str], config: Mapping) -> list[KeyPair]:
    pairs = []
    for key in diffusers_keys:
        try:
            original = UNET_PREFIX + _unet_original_name(key, config)
        except KeyError:
            raise ValueError(f"the UNet parameter {key!r} has no place in the original layout") from None
        pairs.append(KeyPair(original, "unet", (key,)))
    return pairs


# --- VAE -------------------------------------------------------------------------------------

_VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_RESNET_NAMES = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "conv_shortcut": "nin_shortcut",
}


def _vae_original_name(key: str, levels: int) -> tuple[str, str]:
    module, _, parameter = key.rpartition(".")
    fixed = {
        "quant_conv": "quant_conv",
        "post_quant_conv": "post_quant_conv",
        "encoder.conv_in": "encoder.conv_in",
        "encoder.conv_out": "encoder.conv_out",
        "encoder.conv_norm_out": "encoder.norm_out",
        "decoder.conv_in": "decoder.conv_in",
        "decoder.conv_out": "decoder.conv_out",
        "decoder.conv_norm_out": "decoder.norm_out",
    }
    if module in fixed:
        return f"{fixed[module]}.{parameter}", "copy"
    match = re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)", module)
    if match:
        side, kind, index, rest = match[1], match[2], int(match[3]), match[4]
        if kind == "resnets":
            return f"{side}.mid.block_{index + 1}.{_VAE_RESNET_NAMES[rest]}.{parameter}", "copy"
        name = _VAE_ATTENTION_NAMES[rest]
        transform = "conv1x1" if parameter == "weight" and name != "norm" else "copy"
        return f"{side}.mid.attn_{index + 1}.{name}.{parameter}", transform
    match = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.+)", module)
    if match:
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        if kind == "resnets":
            return f"encoder.down.{level}.block.{index}.{_VAE_RESNET_NAMES[rest]}.{parameter}", "copy"
        return f"encoder.down.{level}.downsample.{rest}.{parameter}", "copy"
    match = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.+)", module)
    if match:
        level, kind, index, rest = levels - 1 - int(match[1]), match[2], int(match[3]), match[4]
        if kind == "resnets":
            return f"decoder.up.{level}.block.{index}.{_VAE_RESNET_NAMES[rest]}.{parameter}", "copy"
        return f"decoder.up.{level}.upsample.{rest}.{parameter}", "copy"
    raise KeyError(key)


def vae_pairs(diffusers_keys: Iterable[str], config: Mapping) -> list[KeyPair]:
    levels = len(config["block_out_channels"])
    pairs = []
    for key in diffusers_keys:
        try:
            original, transform = _vae_original_name(key, levels)
        except KeyError:
            raise ValueError(f"the VAE parameter {key!r} has no place in the original layout") from None
        pairs.append(KeyPair(VAE_PREFIX + original, "vae", (key,), transform))
    return pairs


# --- text encoder ------------------------------------------------------------------------------

_OPEN_CLIP_LAYER_NAMES = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def _plain_text_key(key: str) -> str:
    # transformers 5 names CLIPTextModel's parameters without the "text_model." level.
    return key.removeprefix("text_model.")


def text_pairs(diffusers_keys: Iterable[str], layout: str) -> list[KeyPair]:
    keys = list(diffusers_keys)
    if layout == "sd1":
        return [KeyPair(SD1_TEXT_PREFIX + _plain_text_key(key), "text_encoder", (key,)) for key in keys]
    if layout != "sd2":
        raise ValueError(f"unknown text encoder layout {layout!r}; expected one of {LAYOUTS}")
    by_plain = {_plain_text_key(key): key for key in keys}
    pairs = []
    fused: dict[str, list[str]] = {}
    for plain, key in by_plain.items():
        fixed = {
            "embeddings.token_embedding.weight": "token_embedding.weight",
            "embeddings.position_embedding.weight": "positional_embedding",
            "final_layer_norm.weight": "ln_final.weight",
            "final_layer_norm.bias": "ln_final.bias",
        }
        if plain in fixed:
            pairs.append(KeyPair(SD2_TEXT_PREFIX + fixed[plain], "text_encoder", (key,)))
            continue
        match = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", plain)
        if not match:
            raise ValueError(f"the text encoder parameter {key!r} has no place in the OpenCLIP layout")
        layer, module, parameter = int(match[1]), match[2], match[3]
        block = f"{SD2_TEXT_PREFIX}transformer.resblocks.{layer}."
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            fused.setdefault(f"{block}attn.in_proj_{parameter}", []).append(key)
        elif module in _OPEN_CLIP_LAYER_NAMES:
            pairs.append(KeyPair(f"{block}{_OPEN_CLIP_LAYER_NAMES[module]}.{parameter}", "text_encoder", (key,)))
        else:
            raise ValueError(f"the text encoder parameter {key!r} has no place in the OpenCLIP layout")
    for original, parts in fused.items():
        ordered = sorted(parts, key=lambda k: "qkv".index(k.rsplit(".", 2)[-2][0]))
        if len(ordered) != 3:
            raise ValueError(f"{original}: expected q, k and v projections, found {ordered}")
        pairs.append(KeyPair(original, "text_encoder", tuple(ordered), "fused_qkv"))
    return pairs


def open_clip_extras(config: Mapping, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Tensors an OpenCLIP text tower has but SD 2 never uses, for strict loaders.

    SD 2 conditions on the penultimate block, so the last block, ``text_projection`` and
    ``logit_scale`` never influence an image. The exported last block is an identity
    (zero output projections in a pre-norm residual block add nothing), the projection an
    identity matrix and the logit scale OpenCLIP's initial value.
    """
    width = int(config["hidden_size"])
    inner = int(config["intermediate_size"])
    block = f"{SD2_TEXT_PREFIX}transformer.resblocks.{int(config['num_hidden_layers'])}."
    zeros = lambda *shape: torch.zeros(*shape, dtype=dtype)  # noqa: E731
    ones = lambda *shape: torch.ones(*shape, dtype=dtype)  # noqa: E731
    return {
        block + "ln_1.weight": ones(width),
        block + "ln_1.bias": zeros(width),
        block + "attn.in_proj_weight": zeros(3 * width, width),
        block + "attn.in_proj_bias": zeros(3 * width),
        block + "attn.out_proj.weight": zeros(width, width),
        block + "attn.out_proj.bias": zeros(width),
        block + "ln_2.weight": ones(width),
        block + "ln_2.bias": zeros(width),
        block + "mlp.c_fc.weight": zeros(inner, width),
        block + "mlp.c_fc.bias": zeros(inner),
        block + "mlp.c_proj.weight": zeros(width, inner),
        block + "mlp.c_proj.bias": zeros(width),
        SD2_TEXT_PREFIX + "text_projection": torch.eye(width, dtype=dtype),
        SD2_TEXT_PREFIX + "logit_scale": torch.tensor(math.log(1 / 0.07), dtype=dtype),
    }


# --- reading a key set -------------------------------------------------------------------------


def text_layout(keys: Iterable[str]) -> str | None:
    """ "sd1" (transformers CLIP), "sd2" (OpenCLIP) or None when no text encoder is stored."""
    for key in keys:
        if key.startswith(SD2_TEXT_PREFIX):
            return "sd2"
        if key.startswith(SD1_TEXT_PREFIX_OLD):
            return "sd1"
    return None


def normalise_text_keys(keys: Iterable[str]) -> dict[str, str]:
    """Maps the file's text-encoder keys written before transformers 4.21 to today's names."""
    keys = list(keys)
    if any(k.startswith(SD1_TEXT_PREFIX) for k in keys):
        return {}
    renamed = {}
    for key in keys:
        if key.startswith(SD1_TEXT_PREFIX_OLD):
            renamed[SD1_TEXT_PREFIX + key[len(SD1_TEXT_PREFIX_OLD) :]] = key
    return renamed
