"""Affine hypernetworks folded into the attention weights they feed.

A hypernetwork module with the `linear` activation and no LayerNorm (the webui's default,
and most files in circulation) is an affine map in eval mode: `x -> x + m (A x + a)`,
`M x + c` with `M = I + m A`, `c = m a`. So for one attention layer

    keys   = W_k (M_k x + c_k)  ->  (W_k M_k) x + W_k c_k
    values = W_v (M_v x + c_v) + b_v  ->  (W_v M_v) x + b_v + W_v c_v

The key offset `W_k c_k` adds the same vector to every key, which shifts all of a query's
attention logits by one number: softmax ignores it, so it is dropped. The value offset
adds the same vector to every value; attention weights sum to 1, so it reaches the
output unchanged and moves into the output projection's bias: `b_o + W_o W_v c_v`.
So a folded layer is the stock layer with three tensors swapped in (`to_k.weight`,
`to_v.weight`, `to_out[0].bias`) and costs nothing extra per step, in self- and
cross-attention alike; a compiled UNet sees plain weights change, not new code.

The swapped tensors are new plain parameters that remember the original (`Fold`); the
original parameters are put back when the activation ends and never written (the
model-patcher discipline). A layer is left to the MLP path (the attention processor)
when its chain is not affine at its width, or its projections are not plain `nn.Linear`
(an active LoRA adapter, a quantised layer), or it has key normalisation or extra key
projections (the softmax argument above would not hold). Networks in training mode
never fold: training needs their gradients.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Fold:
    """What a weight swapped in for an activation remembers: `base`, the original
    parameter, and `release` (or None), which hands its buffer back to the `FoldCache`.

    It hangs on a plain `nn.Parameter` (attribute `FOLD`), not on a Parameter subclass:
    dynamo guards on a parameter's type, so a subclass made a compiled UNet recompile
    whenever a network folded into other layers than the one before."""

    base: nn.Parameter
    release: object = None


FOLD = "_hypernet_fold"


def fold_of(parameter) -> Fold | None:
    """The `Fold` of a swapped-in weight, None for any other parameter."""
    return parameter.__dict__.get(FOLD) if isinstance(parameter, nn.Parameter) else None


def original(parameter: nn.Parameter) -> nn.Parameter:
    fold = fold_of(parameter)
    return parameter if fold is None else fold.base


def plain_projection(module) -> nn.Linear | None:
    """The `nn.Linear` that computes `module` now: itself, or the base layer of a PEFT
    LoRA layer whose adapters are off. None when an adapter adds its own term."""
    if type(module) is nn.Linear:
        return module
    base = getattr(module, "base_layer", None)
    if type(base) is nn.Linear and getattr(module, "disable_adapters", False) and not getattr(module, "merged", False):
        return base
    return None


@dataclass(frozen=True)
class FoldableLayer:
    """The three linears a fold changes in one attention module."""

    attention: nn.Module
    to_k: nn.Linear
    to_v: nn.Linear
    to_out: nn.Linear

    @property
    def width(self) -> int:
        return self.to_k.in_features


def foldable_layer(attention) -> FoldableLayer | None:
    to_k, to_v = plain_projection(getattr(attention, "to_k", None)), plain_projection(getattr(attention, "to_v", None))
    outputs = getattr(attention, "to_out", None)
    to_out = outputs[0] if isinstance(outputs, nn.ModuleList) and len(outputs) else None
    if to_k is None or to_v is None or type(to_out) is not nn.Linear or to_out.bias is None:
        return None
    if to_v.in_features != to_k.in_features or to_v.out_features != to_out.in_features:
        return None
    if any(getattr(attention, name, None) is not None for name in ("norm_k", "norm_added_k", "add_k_proj")):
        return None
    return FoldableLayer(attention, to_k, to_v, to_out)


def _may_be_affine(module) -> bool:
    """What `HypernetworkModule.affine()` checks before computing anything."""
    return not module.training and all(isinstance(layer, (nn.Linear, nn.Dropout, nn.Identity)) for layer in module.linear)


def _versions_of(tensors) -> tuple:
    return tuple(t._version for t in tensors)


def _tensor_key(parameter) -> tuple:
    return id(parameter), parameter.data_ptr(), parameter._version, parameter.dtype, parameter.device


class FoldCache:
    """Multiplier-free products of networks with the weights they were folded into
    (`W_k A_k`, `W_v A_v`, `W_o W_v a_v`), so a new multiplier costs additions only.
    Keyed by the network, the base tensors and the network's in-place-change counters: a
    network edited or trained after a fold, or a changed base weight, is folded again.
    Products are kept in the weights' dtype, least recently used first out beyond
    `limit_bytes` (one SD 1.5 network: about 176 MB in fp32).

    It also keeps what makes a switch cheap: each UNet's attention modules (found once;
    a UNet whose attention modules are replaced needs `clear()`), and for fp32 weights the
    buffers folded weights are written into (176 MB a set for SD 1.5), so a switch
    allocates nothing. `sets` sets are kept (more while nested activations need them);
    a set remembers what it holds, so going back to one of the last `sets` (network,
    multiplier) pairs writes nothing at all (alternating two networks, or generating
    again with the same one)."""

    def __init__(self, limit_bytes: int = 1 << 30, sets: int = 2):
        self.limit_bytes = limit_bytes
        self.sets = max(1, sets)
        self._serials = itertools.count()  # names a products entry for as long as the cache lives
        self._entries: OrderedDict = OrderedDict()  # key -> (serial, products)
        self._bytes = 0
        self._attention: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._parameters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._free: dict = {}  # layer key -> [(content, versions, (k, v, bias) buffers)], oldest first
        self._made: dict = {}  # layer key -> buffer sets made

    def attention_modules(self, unet) -> list:
        """The modules of `unet` that have a `to_k` (its attention layers), in order."""
        modules = self._attention.get(unet)
        if modules is None:
            modules = [module for module in unet.modules() if hasattr(module, "to_k")]
            self._attention[unet] = modules
        return modules

    def fold_slots(self, unet) -> list:
        """(linear, parameter name) of every tensor a fold may swap in `unet`: `to_k` and
        `to_v` weights (or their LoRA layers' base layers) and `to_out[0]` biases."""
        slots = self._slots.get(unet)
        if slots is None:
            slots = []
            for module in self.attention_modules(unet):
                for linear in (getattr(module, "to_k", None), getattr(module, "to_v", None)):
                    slots += [(candidate, "weight") for candidate in (linear, getattr(linear, "base_layer", None))
                              if isinstance(candidate, nn.Linear)]
                outputs = getattr(module, "to_out", None)
                if isinstance(outputs, nn.ModuleList) and len(outputs) and isinstance(outputs[0], nn.Linear):
                    slots.append((outputs[0], "bias"))
            self._slots[unet] = slots
        return slots

    def _versions(self, network) -> tuple:
        parameters = self._parameters.get(network)
        if parameters is None:
            parameters = self._parameters[network] = tuple(network.parameters())
        return tuple(p._version for p in parameters)

    def lease(self, layer: "FoldableLayer", tensors: tuple, content=None) -> tuple:
        """(key, buffers, ready): buffers shaped like `tensors` for `layer`, not in use by
        another activation; `ready` when they already hold `content` (written with it and
        untouched since), so nothing needs writing. `give_back` returns them."""
        key = tuple(id(original(t)) for t in tensors)
        free = self._free.setdefault(key, [])
        for index, (held, versions, buffers) in enumerate(free):
            if content is not None and held == content and versions == _versions_of(buffers):
                del free[index]
                return key, buffers, True
        if free and self._made.get(key, 0) >= self.sets:
            return key, free.pop(0)[2], False  # the least recently used set is rewritten
        self._made[key] = self._made.get(key, 0) + 1
        return key, tuple(torch.empty_like(original(t).detach()) for t in tensors), False

    def give_back(self, key, buffers, content=None, versions=None) -> None:
        """Return leased buffers; `content` and the `versions` they had when it was written
        (a set written into since is not trusted to hold it)."""
        self._free.setdefault(key, []).append((content, versions, buffers))

    def products(self, network, layer: FoldableLayer, pair) -> tuple | None:
        """(serial, (W_k A_k, W_v A_v, W_o W_v a_v)) for `network` at `layer`, or None
        when its modules there are not affine; the serial names the entry for good."""
        if not all(_may_be_affine(module) for module in pair):
            return None  # decided from the layer types: a relu network costs no product on each switch
        weights = tuple(original(linear.weight) for linear in (layer.to_k, layer.to_v, layer.to_out))
        key = (network, *(_tensor_key(w) for w in weights), self._versions(network))
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        parts = [module.affine() for module in pair]
        if parts[0] is None or parts[1] is None:
            return None
        weight_k, weight_v, weight_o = (w.detach().float() for w in weights)
        (matrix_k, _), (matrix_v, vector_v) = ((m.to(weight_k.device, torch.float32), v.to(weight_k.device, torch.float32))
                                               for m, v in parts)
        dtype = weights[0].dtype
        entry = ((weight_k @ matrix_k).to(dtype), (weight_v @ matrix_v).to(dtype), weight_o @ (weight_v @ vector_v))
        for old in [old for old in self._entries if old[0] is network and old[-1] != key[-1]]:
            self._forget(old)  # the network changed since (a training run's previews): never used again
        self._entries[key] = entry = (next(self._serials), entry)
        self._bytes += sum(t.numel() * t.element_size() for t in entry[1])
        while self._bytes > self.limit_bytes and len(self._entries) > 1:
            self._forget(next(iter(self._entries)))
        return entry

    def _forget(self, key) -> None:
        self._bytes -= sum(t.numel() * t.element_size() for t in self._entries.pop(key)[1])

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._attention.clear()
        self._slots.clear()
        self._parameters.clear()
        self._free.clear()
        self._made.clear()


def folded_tensors(layer: FoldableLayer, networks, cache: FoldCache) -> tuple | None:
    """((to_k weight, to_v weight, to_out bias) with the network folded in, in the weights'
    dtype (computed in fp32), and what gives their buffers back or None), or None when it
    does not fold at this layer.

    Only a layer that one network of the chain reaches folds: `W + m W A` then costs
    additions for any multiplier, once `W A` is known. Two networks on one width would
    need the product of their maps for every multiplier pair (a d³ product per layer on
    each strength change), so such layers run the MLPs, as before folding existed."""
    active = [(network, multiplier) for network, multiplier in networks if network.pair(layer.width) is not None]
    if len(active) != 1:
        return None
    network, multiplier = active[0]
    found = cache.products(network, layer, network.pair(layer.width))
    if found is None:
        return None
    serial, products = found
    bases = (original(layer.to_k.weight), original(layer.to_v.weight), original(layer.to_out.bias))
    if all(base.dtype == torch.float32 for base in bases):  # written into leased buffers: no allocation
        content = (serial, multiplier)
        key, buffers, ready = cache.lease(layer, bases, content)
        if not ready:
            with torch.no_grad():
                for base, product, buffer in zip(bases, products, buffers):
                    torch.add(base.detach(), product, alpha=multiplier, out=buffer)
        versions = _versions_of(buffers)
        return buffers, lambda: cache.give_back(key, buffers, content, versions)
    return tuple(torch.add(base.detach().float(), product.float(), alpha=multiplier).to(base.dtype)
                 for base, product in zip(bases, products)), None


def _swap(linear: nn.Linear, name: str, tensor: torch.Tensor, restore: list, release=None) -> None:
    current = linear._parameters[name]
    folded = nn.Parameter(tensor, requires_grad=current.requires_grad)  # same type and flags: no new guard
    folded.__dict__[FOLD] = Fold(original(current), release)
    restore.append((linear, name, current))
    linear._parameters[name] = folded


def apply_folds(unet, networks, cache: FoldCache) -> tuple[list, set[int]]:
    """Swap folded tensors into every attention layer of `unet` where `networks` fold.
    Returns (what to put back, for `restore`), and the ids of the folded attention
    modules (their processors must not apply the chain again)."""
    restore, folded = [], set()
    if not networks or any(network.training for network, _ in networks):
        return restore, folded
    widths = {size for network, _ in networks for size in network.sizes}
    for module in cache.attention_modules(unet):
        layer = foldable_layer(module)
        if layer is None or layer.width not in widths:
            continue
        if fold_layer(layer, networks, cache, restore):
            folded.add(id(module))
    return restore, folded


def fold_layer(layer: FoldableLayer, networks, cache: FoldCache, restore: list) -> bool:
    """Swap the folded tensors of `networks` into one layer (what to put back goes to
    `restore`); False, and nothing swapped, when they do not fold there."""
    folded = folded_tensors(layer, networks, cache)
    if folded is None:
        return False
    tensors, release = folded
    _swap(layer.to_k, "weight", tensors[0], restore, release)
    _swap(layer.to_v, "weight", tensors[1], restore)
    _swap(layer.to_out, "bias", tensors[2], restore)
    return True


def restore(swapped: list) -> None:
    """Put back what `apply_folds` replaced, last first; the buffers of the folded
    weights swapped out go back to their cache."""
    for linear, name, parameter in reversed(swapped):
        fold = fold_of(linear._parameters[name])
        linear._parameters[name] = parameter
        if fold is not None and fold.release is not None:
            fold.release()
    swapped.clear()


def needs_mlp_path(unet, networks, folded: set[int], cache: FoldCache | None = None) -> bool:
    """Whether some attention layer that a network reaches was not folded."""
    widths = {size for network, _ in networks for size in network.sizes}
    for module in (cache or FoldCache()).attention_modules(unet):
        to_k = getattr(module, "to_k", None)
        width = getattr(plain_projection(to_k) or to_k, "in_features", None)
        if width in widths and id(module) not in folded:
            return True
    return False
