"""The exact LoRA delta of an affine hypernetwork.

A hypernetwork module maps the input of `to_k` (or `to_v`) to x + m·mlp(x). With the
`linear` activation and no LayerNorm the MLP is a chain of Linear layers (Dropout is off
at inference), so mlp(x) = A x + a with A, a composed layer by layer, and

    to_k(x + m(A x + a)) = W_k x + m W_k A x + m W_k a.

The LoRA carries ΔW = m W_k A. The constant m W_k a has no place in a bias-free LoRA:
* on the keys it has no effect at all: it shifts every key of an attention call by the
  same vector, which moves every logit of a query by the same amount, and softmax does
  not change under a shift (so it is dropped, exactly);
* on the values it adds the same vector to every value, so (the attention weights
  summing to 1) the same vector to the attention output. Where the inputs leave a
  LayerNorm (`Target.norm`: always in Stable Diffusion), the constant is the linear map
  c·⟨w, x⟩/s and is folded into ΔW_v exactly; elsewhere it is dropped and its size is
  reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..network import Hypernetwork, HypernetworkModule
from .targets import Target

SIDES = ("to_k", "to_v")  # the pair's first module rewrites the key input, the second the value input


@dataclass
class LayerDelta:
    """What one projection of one attention layer needs: ΔW and how to weigh its truncation."""

    target: Target
    side: str  # "to_k" or "to_v"
    delta: torch.Tensor  # out × in, float64
    root: torch.Tensor | None  # square root of the inputs' second moment (None: isotropic)
    bias: str  # how the constant part of the change was handled
    total: float | None = None  # squared size of the change it stands for (None: the delta's own)

    @property
    def key(self) -> str:
        return f"{self.target.name}.{self.side}"


def affine_map(module: HypernetworkModule) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(A, a) with mlp(x) = A x + a at inference (float64, on the CPU), or None when the
    MLP is not affine: `HypernetworkModule.affine`, which the folding shares."""
    parts = module.affine()
    return None if parts is None else (parts[0].cpu(), parts[1].cpu())


def is_affine(network: Hypernetwork) -> bool:
    return all(affine_map(module) is not None for pair in network.pairs.values() for module in pair)


def _weight(target: Target, side: str) -> torch.Tensor:
    return target.projection(side).weight.detach().to(torch.float64).cpu()


def exact_deltas(network: Hypernetwork, targets: list[Target], multiplier: float, fold_value_bias: bool = True) -> list[LayerDelta]:
    """ΔW for to_k and to_v of every target, from the network's affine maps."""
    deltas, maps = [], {}
    for target in targets:
        pair = network.pair(target.width)
        for side, module in zip(SIDES, pair):
            if (target.width, side) not in maps:  # one composition per size, shared by its layers
                maps[target.width, side] = affine_map(module)
            matrix, offset = maps[target.width, side]
            weight = _weight(target, side)
            delta = multiplier * weight @ matrix
            constant = multiplier * weight @ offset
            norm = target.norm
            if float(constant.abs().max()) == 0:
                bias = "no offset"
            elif side == "to_k":
                bias = "key offset: left out (no effect)"
            elif fold_value_bias and target.can_fold():
                delta = delta + torch.outer(constant, norm.direction) / norm.constant
                bias = "value offset: folded (exact)"
            else:
                bias = None
            root = norm.root(centred=side == "to_k") if norm is not None else None
            total = None
            if side == "to_v" and bias is None:  # dropped: its share of the change counts as error
                energy = float((delta @ root).square().sum()) if root is not None else float(delta.square().sum())
                total = energy + float(constant.square().sum())
                bias = f"value offset: dropped ({(float(constant.square().sum()) / total) ** 0.5:.2g} of the change)"
            deltas.append(LayerDelta(target, side, delta, root, bias, total))
    return deltas
