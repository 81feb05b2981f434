"""The attention layers a hypernetwork reaches in one UNet, and what is known about their
inputs.

A hypernetwork is keyed by width: it rewrites the input of `to_k`/`to_v` in every
attention layer whose `to_k` takes that width, self- and cross-attention alike (contract
§0.1-0.2). So the LoRA gets a delta for each such layer.

In Stable Diffusion every such input leaves a LayerNorm: self-attention reads the
transformer block's `norm1`, cross-attention the text encoder's `final_layer_norm`. A
LayerNorm output x = γ⊙z + β has Σz = 0, so ⟨1/γ, x⟩ = Σβ/γ for *every* input: a
constant is a linear function of x there. That lets a LoRA, which has no bias, carry a
constant offset on the values exactly (`Target.constant`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import HypernetError

# Above this, ⟨w, x⟩ = s loses more than ~1e-3 of s to float32 rounding: the constant is
# not folded (it is dropped, and the drop is reported).
MAX_FOLD_CONDITION = 1e4


@dataclass(frozen=True)
class LayerNormShape:
    """What a LayerNorm's outputs satisfy: ⟨w, x⟩ = s, and their second moment model."""

    weight: torch.Tensor  # γ (float64)
    bias: torch.Tensor  # β (float64)

    @property
    def direction(self) -> torch.Tensor:
        return 1.0 / self.weight

    @property
    def constant(self) -> float:
        return float((self.bias / self.weight).sum())

    @property
    def condition(self) -> float:
        """(|Σz| bound + Σ|β/γ|) / |s|: how much rounding ⟨w, x⟩ = s amplifies."""
        s = self.constant
        spread = self.weight.numel() + float((self.bias / self.weight).abs().sum())
        return float("inf") if s == 0 else spread / abs(s)

    def root(self, centred: bool) -> torch.Tensor:
        """R with R Rᵀ = E[x xᵀ] for x = γ⊙z + β, z isotropic (unit variance, Σz = 0):
        γ⊙(I - 11ᵀ/d), and the column β unless `centred` (a constant shift of the keys has
        no effect, so their truncation may ignore it)."""
        d = self.weight.numel()
        projector = torch.eye(d, dtype=torch.float64) - torch.full((d, d), 1.0 / d, dtype=torch.float64)
        root = self.weight[:, None] * projector
        return root if centred else torch.cat([root, self.bias[:, None]], dim=1)


@dataclass(frozen=True)
class Target:
    """One attention layer the network reaches."""

    name: str  # module path in the UNet, e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn1
    attention: nn.Module
    width: int  # features entering to_k / to_v: the network's size for this layer
    cross: bool
    norm: LayerNormShape | None  # the LayerNorm its inputs leave, when known

    def projection(self, side: str) -> nn.Linear:
        return _plain_linear(getattr(self.attention, side))

    def can_fold(self) -> bool:
        return self.norm is not None and self.norm.condition <= MAX_FOLD_CONDITION


def _plain_linear(module) -> nn.Linear | None:
    """The layer itself, or the base layer under a peft LoRA wrapper (adapters loaded into
    the pipeline change nothing here: the export is against the base weights)."""
    if isinstance(module, nn.Linear):
        return module
    base = getattr(module, "base_layer", None)
    return base if isinstance(base, nn.Linear) else None


def _shape_of(norm) -> LayerNormShape | None:
    if not isinstance(norm, nn.LayerNorm) or norm.weight is None or norm.bias is None or norm.weight.is_meta:
        return None
    weight = norm.weight.detach().to(torch.float64).cpu()
    if bool((weight == 0).any()):
        return None
    return LayerNormShape(weight, norm.bias.detach().to(torch.float64).cpu())


def text_layer_norm(text_encoder) -> nn.LayerNorm | None:
    """The CLIP text encoder's final LayerNorm (the webui applies it after clip skip too)."""
    model = getattr(text_encoder, "text_model", text_encoder)
    norm = getattr(model, "final_layer_norm", None)
    return norm if isinstance(norm, nn.LayerNorm) else None


def _input_norm(unet, name: str, attention, cross: bool, text_norm):
    parent_name, _, child = name.rpartition(".")
    block = unet.get_submodule(parent_name) if parent_name else None
    if cross:
        projected = getattr(unet, "encoder_hid_proj", None) is not None
        return None if projected or child != "attn2" else _shape_of(text_norm)
    plain_block = (
        block is not None and child == "attn1" and getattr(block, "attn1", None) is attention
        and getattr(block, "norm_type", None) == "layer_norm" and getattr(block, "pos_embed", None) is None
        and not getattr(block, "only_cross_attention", False)
    )
    return _shape_of(block.norm1) if plain_block else None


def find_targets(unet, sizes, text_norm=None) -> list[Target]:
    """The attention layers of `unet` whose to_k width is one of `sizes`, in module order."""
    targets = []
    for name, module in unet.named_modules():
        if getattr(module, "to_k", None) is None or not hasattr(module, "processor"):
            continue
        to_k, to_v = _plain_linear(module.to_k), _plain_linear(getattr(module, "to_v", None))
        if to_k is None or to_v is None:
            raise HypernetError(f"attention {name}: to_k/to_v are not Linear layers (fused projections?); "
                                "call unet.unfuse_qkv_projections() first")
        width = int(to_k.in_features)
        if width not in sizes:
            continue
        cross = bool(getattr(module, "is_cross_attention", False))
        targets.append(Target(name, module, width, cross, _input_norm(unet, name, module, cross, text_norm)))
    return targets
