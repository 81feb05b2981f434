"""Affine hypernetworks folded into the projections they feed.

A hypernetwork module with the `linear` activation and no LayerNorm (the webui's default,
and most files in circulation) is an affine map in eval mode: `x -> x + m (A x + a)`. A
chain of them is affine too, `x -> M x + c`, so

    to_k(M x + c) = (W M) x + (W c + b)

and the whole chain costs nothing per denoising step: one projection with folded weights
instead of two MLPs on every pixel token of every self-attention layer.

The folded weights are new tensors handed to `F.linear`; the base `to_k`/`to_v` weights
are never written. Products that do not depend on the multiplier (`W A`, `W a` for a
single network) are kept across activations, so moving a strength slider costs one
`W + m P` per layer; folds of whole chains are kept too, both bounded (least recently
used first out). Where a chain is not affine for a width, or `to_k`/`to_v` are not plain
`nn.Linear` (a LoRA adapter, a quantised layer), or gradients are on (training), the
caller runs the MLPs as before.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

Weights = tuple  # (key weight, key bias, value weight, value bias)


def _network_key(network) -> tuple:
    """Identity plus in-place-change counters: a network trained or edited after a fold
    gets a new key, so a stale fold is never used."""
    return network, tuple(parameter._version for parameter in network.parameters())


def _linear_key(linear: nn.Linear) -> tuple:
    weight = linear.weight
    return id(linear), weight.data_ptr(), weight._version, weight.dtype, weight.device


def plain_projection(module) -> nn.Linear | None:
    """The `nn.Linear` that computes `module` now: itself, or the base layer of a PEFT
    LoRA layer whose adapters are off (the `<lora:…>` tags of another request) or merged
    into it. None when adapters add their own term (then the MLPs run as written)."""
    if type(module) is nn.Linear:
        return module
    base = getattr(module, "base_layer", None)
    if type(base) is not nn.Linear:
        return None
    disabled, merged = bool(getattr(module, "disable_adapters", False)), bool(getattr(module, "merged", False))
    return base if disabled != merged else None  # disabled and merged: peft unmerges in forward


def chain_affine(networks, width: int, device) -> tuple | None:
    """`(M_k, c_k, M_v, c_v)` (float64) of the chain for inputs of `width`, or None when a
    network that has this width is not affine. Networks without the width pass through."""
    maps = [None, None]  # per branch: (M, c); None = identity so far
    for network, multiplier in networks:
        pair = network.pair(width)
        if pair is None:
            continue
        for branch, module in enumerate(pair):
            parts = module.affine()
            if parts is None:
                return None
            matrix, vector = (part.to(device) for part in parts)
            step = torch.eye(width, dtype=torch.float64, device=device) + multiplier * matrix
            if maps[branch] is None:
                maps[branch] = (step, multiplier * vector)
            else:
                previous_matrix, previous_vector = maps[branch]
                maps[branch] = (step @ previous_matrix, step @ previous_vector + multiplier * vector)
    if maps[0] is None:
        return None  # no network of the chain has this width: nothing to fold
    return (*maps[0], *maps[1])


def _bias(linear: nn.Linear) -> torch.Tensor:
    if linear.bias is not None:
        return linear.bias.detach().float()
    return torch.zeros(linear.out_features, device=linear.weight.device)


class Folds:
    """Folded projection weights of one UNet, owned by its `ActiveChain`."""

    def __init__(self, limit: int = 2):
        self.limit = limit  # chains (or single networks) whose folds are kept
        self._products: OrderedDict = OrderedDict()  # network key -> {linear key: (P, p)}
        self._chains: OrderedDict = OrderedDict()  # chain key -> {attention id: Weights | None}
        self._current: dict | None = None

    def reset(self) -> None:
        """A new chain is active: look its folds up again on first use."""
        self._current = None

    def clear(self) -> None:
        self._products.clear()
        self._chains.clear()
        self._current = None

    def weights(self, attention, networks) -> Weights | None:
        """Folded (W_k, b_k, W_v, b_v) for `attention` under `networks`, or None when the
        chain does not fold there (the caller runs the MLPs). A fold is keyed by the
        projections it was made from, so a LoRA switched on or merged later is never
        bypassed by an older fold."""
        if not networks or torch.is_grad_enabled():
            return None
        to_k, to_v = plain_projection(attention.to_k), plain_projection(attention.to_v)
        if to_k is None or to_v is None or to_v.in_features != to_k.in_features:
            return None
        if self._current is None:
            key = tuple((_network_key(network), multiplier) for network, multiplier in networks)
            self._current = self._remember(self._chains, key, dict)
        state = (_linear_key(to_k), _linear_key(to_v))
        entry = self._current.get(id(attention))
        if entry is None or entry[0] != state:
            entry = (state, self._fold(to_k, to_v, networks))
            self._current[id(attention)] = entry
        return entry[1]

    def _remember(self, table: OrderedDict, key, make):
        if key in table:
            table.move_to_end(key)
        else:
            table[key] = make()
            while len(table) > self.limit:
                table.popitem(last=False)
        return table[key]

    def _fold(self, to_k: nn.Linear, to_v: nn.Linear, networks) -> Weights | None:
        width = to_k.in_features
        active = [(network, multiplier) for network, multiplier in networks if network.pair(width) is not None]
        if not active:
            return None
        if len(active) == 1:
            return self._fold_one(to_k, to_v, *active[0])
        maps = chain_affine(active, width, to_k.weight.device)
        if maps is None:
            return None
        matrix_k, vector_k, matrix_v, vector_v = (part.float() for part in maps)
        return (*self._folded(to_k, matrix_k, vector_k), *self._folded(to_v, matrix_v, vector_v))

    @staticmethod
    def _folded(linear: nn.Linear, matrix: torch.Tensor, vector: torch.Tensor) -> tuple:
        weight = linear.weight.detach().float()
        return (weight @ matrix).to(linear.weight.dtype), (weight @ vector + _bias(linear)).to(linear.weight.dtype)

    def _fold_one(self, to_k: nn.Linear, to_v: nn.Linear, network, multiplier: float) -> Weights | None:
        """W + m (W A), b + m (W a), with `W A` and `W a` kept per network: a new
        multiplier for the same network costs two additions per projection."""
        products = self._remember(self._products, _network_key(network), dict)
        pair = network.pair(to_k.in_features)
        folded = []
        for linear, module in ((to_k, pair[0]), (to_v, pair[1])):
            key = _linear_key(linear)
            if key not in products:
                parts = module.affine()
                if parts is None:
                    return None
                matrix, vector = (part.to(linear.weight.device, torch.float32) for part in parts)
                weight = linear.weight.detach().float()
                products[key] = (weight @ matrix, weight @ vector)
            product, product_bias = products[key]
            weight = torch.add(linear.weight.detach().float(), product, alpha=multiplier)
            bias = torch.add(_bias(linear), product_bias, alpha=multiplier)
            folded += [weight.to(linear.weight.dtype), bias.to(linear.weight.dtype)]
        return tuple(folded)
