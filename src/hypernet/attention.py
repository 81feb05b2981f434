"""Hypernetworks inside a diffusers UNet, through its one seam: attention processors.

`install(unet)` wraps every UNet attention processor (never the VAE's) in a
`HypernetworkProcessor`; `activate(unet, networks)` is a context manager that sets the
(network, multiplier) chain for one call and restores the previous chain afterwards, even
on error; `uninstall(unet)` puts the original processors back. Base weights are never
touched. With no active network (or multiplier 0) the wrapped processor is called exactly
as before, so the UNet's output is bit-identical to stock diffusers.

The processor hands the original processor a view of the attention module whose `to_k`
and `to_v` first run their input through the chain (contract §3.2). Whatever computes
the attention (SDPA, xformers, a LoRA-patched `to_k`, IP-Adapter) therefore keeps working
unchanged: the wrapper takes the keyword arguments its base takes, and an `nn.Module`
base (IP-Adapter's) keeps its weights registered under the same state-dict keys.
The cross-attention context is the same tensor at every denoising step and in every
layer, so its hypernetwork output is computed once per activation and reused.

Where a chain is affine (linear activation, no LayerNorm: most files), `activate` folds
it into the layer's weights instead (`hypernet.folding`): no MLP runs per step, and when
every reached layer folds no processor is installed at all, so a `torch.compile`d UNet
runs unchanged. `activate(..., fold=False)` keeps the MLP path everywhere. The MLP path
compiles too: diffusers' default `AttnProcessor2_0` gets a `StandardProcessor`, which
dynamo traces without a break and which reads same-structure stand-ins of the networks
(`hypernet.compiled`), so a switch of network or multiplier does not recompile.

`activate_rows(unet, row_chains)` gives each row of the UNet batch its own chain (a
server batching several users' requests); the per-layer plan is `hypernet.row_chains`.
"""

from __future__ import annotations

import contextlib
import inspect
import types
from dataclasses import dataclass, field
from typing import Iterable

import torch

from . import compiled, folding
from .row_chains import LayerRows, RowPlan, plan_layers
from .errors import HypernetError
from .network import Hypernetwork, apply_chain

Chain = tuple  # tuple[tuple[Hypernetwork, float], ...]


@dataclass
class ActiveChain:
    """What the processors of one UNet apply now. Owned by that UNet's processors."""

    networks: Chain = ()
    cache_context: bool = True
    folded: frozenset = frozenset()  # ids of attention modules whose weights carry the chain
    rows: RowPlan | None = None  # set by `activate_rows`: a chain per row, `networks` unused
    mlp: bool = True  # some layer runs the MLPs (all folded: the processors call their bases as they are)
    slots: compiled.Slots = field(default_factory=compiled.Slots)  # what a traced call reads
    _context_cache: dict = field(default_factory=dict)

    def set(self, networks: Chain, folded: Iterable[int] = (), rows: RowPlan | None = None, mlp: bool = True) -> None:
        self.networks = tuple((n, float(m)) for n, m in networks if float(m) != 0.0)
        self.folded = frozenset(folded)
        self.rows = rows
        self.mlp = mlp
        self._context_cache.clear()
        if mlp and rows is None and self.networks:
            self.slots.load(self.networks)
        else:
            self.slots.clear()

    def view(self, attention, batch: int, context: torch.Tensor | None):
        """`attention` as the base processor should see it now: itself where nothing
        applies (a folded layer, or one no network reaches), else a key/value view."""
        layer = None
        if self.rows is not None:
            layer = self.rows.layer(attention, batch)  # checks the batch size
            if layer is None:
                return attention
        elif not self.networks or id(attention) in self.folded:
            return attention
        return _KeyValueView(attention, self, constant_context=context is not None, layer=layer)

    def key_value_inputs(self, context: torch.Tensor, constant: bool,
                         layer: LayerRows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(key input, value input) for `context`, through `networks` or, in an
        `activate_rows` block, the layer's rows; `constant` inputs (the text context) are
        cached by identity for as long as this chain is active and no grad is taken."""
        compute = layer if layer is not None else (lambda x: apply_chain(self.networks, x))
        if not (constant and self.cache_context) or torch.is_grad_enabled():
            return compute(context)
        key = (id(context), id(layer))  # a LayerRows lives as long as the plan: as long as this cache
        entry = self._context_cache.get(key)
        if entry is not None and entry[0] is context and entry[1] == context._version:
            return entry[2]
        result = compute(context)
        self._context_cache[key] = (context, context._version, result)  # holds the tensor: id stays unique
        return result


class _KeyValueView:
    """Stands in for an `Attention` module; only `to_k`/`to_v` differ from the real one."""

    def __init__(self, attention, chain: ActiveChain, constant_context: bool, layer=None):
        self._attention = attention
        self._chain = chain
        self._constant = constant_context
        self._layer = layer
        self._last = None

    def _inputs(self, x):
        if self._last is None or self._last[0] is not x:
            self._last = (x, self._chain.key_value_inputs(x, self._constant, self._layer))
        return self._last[1]

    def to_k(self, x):
        return self._attention.to_k(self._inputs(x)[0])

    def to_v(self, x):
        return self._attention.to_v(self._inputs(x)[1])

    def __getattr__(self, name):
        return getattr(self._attention, name)


class HypernetworkProcessor:
    """Wraps one attention processor (the base) and hands it the key/value view while a
    chain is active; otherwise the base is called exactly as diffusers would call it.

    It stands in for the base towards diffusers: `Attention.forward` drops every keyword
    argument that `inspect.signature(processor.__call__)` does not name, so the instance's
    `__call__` carries the base's signature (IP-Adapter's `ip_adapter_masks` and any other
    `cross_attention_kwargs` arrive); `__class__` names the base's class, so diffusers'
    isinstance checks (`set_ip_adapter_scale`, `unload_ip_adapter`) still find the base;
    other attributes are read from the base. `type(processor)` stays this class.
    A plain object for a plain base: nothing enters the UNet's state dict.
    """

    def __init__(self, base, chain: ActiveChain):
        _bind(self, base, chain)

    def __call__(self, attn, hidden_states, *args, **kwargs):
        if self.chain.rows is not None or (self.chain.mlp and self.chain.networks):  # a compiled UNet guards on what is read
            context = kwargs.get("encoder_hidden_states", args[0] if args else None)
            attn = self.chain.view(attn, hidden_states.shape[0], context)
        return self.base(attn, hidden_states, *args, **kwargs)

    @property
    def __class__(self):
        return type(self.__dict__["base"])

    def __getattr__(self, name):
        base = self.__dict__.get("base")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def __reduce_ex__(self, protocol):  # copy and pickle by the real class, not `__class__`
        return _new, (type(self),), {key: value for key, value in self.__dict__.items() if key != "__call__"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        _expose_signature(self)


class HypernetworkModuleProcessor(HypernetworkProcessor, torch.nn.Module):
    """The wrapper of an `nn.Module` base (IP-Adapter, some LoRA and custom processors).

    It is a module whose parameters, buffers and children *are* the base's (the same
    dictionaries, the base itself is not a child), so `unet.state_dict()` keeps the very
    keys it had (`...attn2.processor.to_k_ip.0.weight`) and `.to()` / `load_state_dict`
    reach the base's weights while the wrapper is installed.
    """

    def __init__(self, base: torch.nn.Module, chain: ActiveChain):
        torch.nn.Module.__init__(self)
        _bind(self, base, chain)
        for name in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
            object.__setattr__(self, name, getattr(base, name))

    def train(self, mode: bool = True):
        self.base.training = mode
        return torch.nn.Module.train(self, mode)


class StandardProcessor(compiled.TracedCall, HypernetworkProcessor):
    """The wrapper of diffusers' default `AttnProcessor2_0`, written for dynamo: the
    class's own `__call__` (`compiled.TracedCall`) has the base's signature, no
    per-instance `__call__`; calls it cannot trace go to `HypernetworkProcessor.__call__`."""

    def __init__(self, base, chain: ActiveChain):
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "chain", chain)

    def __setstate__(self, state):
        self.__dict__.update(state)


def _bind(processor, base, chain: ActiveChain) -> None:
    """Set the wrapper's own attributes without nn.Module's registration (the base must
    not become a child: its keys would move under `processor.base.`)."""
    object.__setattr__(processor, "base", base)
    object.__setattr__(processor, "chain", chain)
    _expose_signature(processor)


def _expose_signature(processor) -> None:
    """`processor.__call__` (what diffusers inspects; calls go through the class) becomes
    a method whose signature is the base's. A method of the instance, not a closure, so a
    deep copy of the UNet binds it to the copy."""

    def call(self, *args, **kwargs):
        return type(self).__call__(self, *args, **kwargs)

    accepted = _signature(processor.__dict__["base"])
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    call.__signature__ = accepted.replace(parameters=[self_parameter, *accepted.parameters.values()])
    object.__setattr__(processor, "__call__", types.MethodType(call, processor))


def _new(cls):
    return cls.__new__(cls)


def _signature(base) -> inspect.Signature:
    try:
        return inspect.signature(base.__call__)
    except (TypeError, ValueError):
        return inspect.Signature([inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
                                  inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)])


def _wrap(base, chain: ActiveChain) -> HypernetworkProcessor:
    from diffusers.models.attention_processor import AttnProcessor2_0

    if type(base) is AttnProcessor2_0:
        return StandardProcessor(base, chain)
    if isinstance(base, torch.nn.Module):
        return HypernetworkModuleProcessor(base, chain)
    return HypernetworkProcessor(base, chain)


def _processors(unet) -> dict:
    if not hasattr(unet, "attn_processors"):
        raise HypernetError(f"{type(unet).__name__} has no attention processors; expected a diffusers UNet")
    return unet.attn_processors


def attention_widths(unet) -> list[int]:
    """Feature sizes entering `to_k` in the UNet's attention layers (sorted, distinct):
    the sizes a hypernetwork for this model needs."""
    widths = set()
    for module in unet.modules():
        to_k = getattr(module, "to_k", None)
        if isinstance(to_k, torch.nn.Linear):
            widths.add(int(to_k.in_features))
    return sorted(widths)


def installed_chain(unet, cache: folding.FoldCache | None = None) -> ActiveChain | None:
    """The chain object of an installed UNet, or None when not installed (`cache`: a
    `FoldCache` that knows the UNet's attention modules, so none are searched)."""
    if cache is not None:
        processors = (getattr(module, "processor", None) for module in cache.attention_modules(unet))
    elif hasattr(unet, "attn_processors"):  # a property: this walks the UNet
        processors = _processors(unet).values()
    else:
        return None
    for processor in processors:
        if isinstance(processor, HypernetworkProcessor):
            return processor.chain
    return None


def install(unet) -> ActiveChain:
    """Wrap every attention processor of `unet` (idempotent); returns its chain object."""
    chain = installed_chain(unet)
    if chain is not None:
        return chain
    for name, module in unet.named_modules():
        if getattr(module, "fused_projections", False):
            raise HypernetError(f"attention {name} uses fused q/k/v projections; call unet.unfuse_qkv_projections() first")
    chain = ActiveChain()
    unet.set_attn_processor({name: _wrap(p, chain) for name, p in _processors(unet).items()})
    unet.register_forward_pre_hook(chain.slots.begin_call)  # a traced call's per-call memo
    return chain


def uninstall(unet) -> None:
    """Put the original processors back."""
    processors = _processors(unet)
    for key, hook in list(unet._forward_pre_hooks.items()):  # by kind, not by handle: a deep copy has its own
        if getattr(hook, "__func__", None) is compiled.Slots.begin_call:
            del unet._forward_pre_hooks[key]
    if any(isinstance(p, HypernetworkProcessor) for p in processors.values()):
        unet.set_attn_processor({
            name: p.base if isinstance(p, HypernetworkProcessor) else p for name, p in processors.items()
        })


def _as_chain(networks: Iterable) -> Chain:
    """(network, internal multiplier): user multipliers through calibration curves, once."""
    chain = []
    for entry in networks:
        network, multiplier = (entry, entry.multiplier) if isinstance(entry, Hypernetwork) else entry
        if not isinstance(network, Hypernetwork):
            raise HypernetError(f"expected a Hypernetwork, got {type(network).__name__}")
        chain.append((network, network.effective_multiplier(float(multiplier))))
    return tuple(chain)


def _move_to(unet, chain: Chain) -> None:
    device = next(unet.parameters()).device
    for network, _ in chain:
        parameter = next(network.parameters())
        if parameter.device != device or parameter.dtype != torch.float32:
            network.to(device=device, dtype=torch.float32)  # MLPs always compute in fp32


def _suspend_folds(unet, swapped: list, cache: folding.FoldCache) -> None:
    """Put an outer activation's folds (in attention linears) back for the inner one."""
    for module, name in cache.fold_slots(unet):
        parameter = module._parameters.get(name)
        fold = folding.fold_of(parameter)
        if fold is not None:
            swapped.append((module, name, parameter))
            module._parameters[name] = fold.base


@contextlib.contextmanager
def activate(unet, networks: Iterable, fold: bool = True, cache: folding.FoldCache | None = None):
    """Apply `networks` (Hypernetworks, or (network, multiplier) pairs, in chain order)
    to `unet` inside the block; the previous chain is restored on exit, even on error.

    Affine chains are folded into the attention weights (`hypernet.folding`; `fold=False`
    runs the MLPs instead; a long-lived `cache` reuses the multiplier-free products);
    processors are installed only where a layer needs the MLP path. Multipliers go through
    the networks' calibration curves. Yields the `ActiveChain`, or None if none installed."""
    with _activate(unet, tuple((n, m) for n, m in _as_chain(networks) if m != 0.0), fold, cache) as chain:
        yield chain


@contextlib.contextmanager
def _activate(unet, new: Chain, fold: bool, cache: folding.FoldCache | None):  # multipliers internal
    _move_to(unet, new)
    cache = cache if cache is not None else folding.FoldCache()
    swapped: list = []
    folded: set[int] = set()
    _suspend_folds(unet, swapped, cache)  # an outer activation's folds are not this chain
    if new and fold:
        folds, folded = folding.apply_folds(unet, new, cache)
        swapped += folds
    chain = installed_chain(unet, cache)
    mlp = bool(new) and folding.needs_mlp_path(unet, new, folded, cache)
    if chain is None and mlp:
        chain = install(unet)
    previous = (chain.networks, chain.folded, chain.rows, chain.mlp) if chain is not None else None
    try:
        if chain is not None:
            chain.set(new, folded, mlp=mlp)
        yield chain
    finally:
        if chain is not None:
            chain.set(*previous)
        folding.restore(swapped)


@contextlib.contextmanager
def activate_rows(unet, row_chains: Iterable[Iterable], fold: bool = True, cache: folding.FoldCache | None = None):
    """Like `activate`, with one chain per row of the UNet batch (`row_chains[i]`
    applies to row i of hidden_states / encoder_hidden_states in every attention layer;
    under CFG the caller lists both halves, e.g. `[c0, c1, c0, c1]`). Each row's result
    equals running it alone under `activate(unet, row_chains[i])` (fp32 rounding).

    All rows equal (same networks, order and multipliers, multiplier 0 dropped): exactly
    `activate(unet, that_chain, fold, cache)`. Otherwise per layer (`hypernet.row_chains`):
    a layer where every row's chain restricted to its width is the same folds or runs
    that chain as `activate` would; other layers run each group of equal rows through its
    chain. A UNet call with another batch size then raises `HypernetError`.
    Yields what `activate` yields when all rows are equal; otherwise the processors'
    `ActiveChain`, its `rows` holding the plan (`networks` empty, `folded` the folded layers)."""
    chains = [tuple((n, m) for n, m in _as_chain(chain) if m != 0.0) for chain in row_chains]  # calibrated
    if not chains:
        raise HypernetError("activate_rows got no rows; pass one chain (possibly empty) per row of the UNet batch")
    if all(chain == chains[0] for chain in chains):
        with _activate(unet, chains[0], fold, cache) as chain:  # calibrated once, above
            yield chain
        return
    for chain in set(chains):
        _move_to(unet, chain)
    cache = cache if cache is not None else folding.FoldCache()
    swapped: list = []
    _suspend_folds(unet, swapped, cache)  # an outer activation's folds are not these chains
    chain = install(unet)  # always: every call's batch size is checked in the processors
    previous = (chain.networks, chain.folded, chain.rows, chain.mlp)
    try:
        plan, folded = plan_layers(unet, chains, fold, cache, swapped)
        chain.set((), folded, plan)
        yield chain
    finally:
        chain.set(*previous)
        folding.restore(swapped)
