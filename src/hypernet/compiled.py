"""The MLP path in a form `torch.compile` traces: no graph break, no recompilation when
the network or multiplier changes but the structure does not.

Dynamo turns every Python value the processor reads into a guard: reading the active
`Hypernetwork` objects or float multipliers would recompile the UNet on each switch. So
for the diffusers default processor (`AttnProcessor2_0`) the wrapper reads `Slots`
instead: per position in the chain, a stand-in network of the same structure and sizes,
owned by the UNet's `ActiveChain` for as long as it is installed, whose tensors the
activation overwrites in place (`copy_`), and the multiplier as a 0-d tensor. Another
network of the same structure changes data, not graph. The attention itself is
`AttnProcessor2_0`'s arithmetic with the key and value inputs passed in
(`attention_2_0`), so no stand-in module object (the key/value view) has to be traced.

Eager calls keep the original networks and the text-context cache of
`attention.ActiveChain`; only a call being traced reads the slots. A traced graph cannot
cache by identity across calls, and does not merge the same product computed in several
layers, so the slots keep the text context's key/value inputs for one UNet call (a memo
a forward pre-hook renews): computed once per step, not once per cross-attention layer.

Other bases (IP-Adapter, xformers, custom processors), per-row chains, grad mode and
networks in training mode take the key/value view as before: correct, but with graph
breaks under compile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .network import Hypernetwork

if TYPE_CHECKING:
    from diffusers.models.attention_processor import Attention


def _shape(network: Hypernetwork) -> tuple:
    return network.structure, tuple(network.sizes), next(network.parameters()).device


class Slots:
    """Stand-ins for the networks of the active chain, same tensors across switches."""

    def __init__(self):
        self.active = False
        self._networks: list[Hypernetwork] = []
        self._multipliers: list[torch.Tensor] = []
        self._shapes: tuple = ()
        self.by_width: dict[int, tuple] = {}  # width -> ((key module, value module, multiplier), ...)
        self.memo: dict = {}  # width -> (text context, its key/value inputs), for one UNet call

    def load(self, networks) -> None:
        """Copy `networks` ((network, multiplier) pairs, zeros dropped) into the slots;
        stand-ins are built only where the structure at a position changed."""
        if not networks or any(network.training for network, _ in networks):
            self.active = False
            return
        shapes = tuple(_shape(network) for network, _ in networks)
        with torch.no_grad():
            for position, (network, multiplier) in enumerate(networks):
                if position >= len(self._networks) or _shape(self._networks[position]) != shapes[position]:
                    self._grow(position, network)
                for target, source in zip(self._networks[position].state_dict().values(), network.state_dict().values()):
                    target.copy_(source)
                self._multipliers[position].fill_(multiplier)
        if shapes != self._shapes:  # a new dict only when the structure changed: that recompiles
            self._shapes = shapes
            widths = {width for network, _ in networks for width in network.sizes}
            self.by_width = {width: tuple((pair[0], pair[1], self._multipliers[position])
                                          for position, (network, _) in enumerate(networks)
                                          if (pair := self._networks[position].pair(width)) is not None)
                             for width in widths}
        self.active = True

    def _grow(self, position: int, network: Hypernetwork) -> None:
        parameter = next(network.parameters())
        with torch.device("meta"):
            stand_in = Hypernetwork(network.sizes, network.structure)
        stand_in = stand_in.to_empty(device=parameter.device).to(parameter.dtype).eval().requires_grad_(False)
        multiplier = torch.zeros((), dtype=torch.float32, device=parameter.device)
        if position < len(self._networks):
            self._networks[position], self._multipliers[position] = stand_in, multiplier
        else:
            self._networks.append(stand_in)
            self._multipliers.append(multiplier)

    def clear(self) -> None:
        self.active = False
        self.memo = {}

    def begin_call(self, *_) -> None:
        """A UNet forward pre-hook: a new call, a new memo. Traced with the UNet, it is a
        new dict, not a guarded one, so it does not recompile."""
        self.memo = {}

    def key_value_inputs(self, x: torch.Tensor, constant: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """`apply_chain` of the loaded networks, with tensor multipliers. A `constant`
        input (the text context, the same tensor in every cross-attention layer of a UNet
        call) is computed once per call: a compiled graph does not merge repeated products
        of one input, so without the memo every layer of the width recomputed it."""
        if constant:
            entry = self.memo.get(x.shape[-1])
            if entry is not None and entry[0] is x:
                return entry[1]
        key_input = value_input = x
        for key_module, value_module, multiplier in self.by_width.get(x.shape[-1], ()):
            key_input = _residual(key_module, key_input, multiplier)
            value_input = _residual(value_module, value_input, multiplier)
        if constant:
            self.memo[x.shape[-1]] = (x, (key_input, value_input))
        return key_input, value_input


def _residual(module, x: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
    """`HypernetworkModule.forward` in eval mode, the multiplier a tensor (never 0 here:
    zero multipliers are dropped from a chain)."""
    y = module.linear(x.to(torch.float32)).to(x.dtype)
    return x + y * multiplier.to(x.dtype)


class TracedCall:
    """The `__call__` of `attention.StandardProcessor` (before `HypernetworkProcessor` in
    its bases): a single chain in a no-grad call runs `attention_2_0` with the key/value
    inputs, the slots' while traced; any other call goes on to the key/value view."""

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:  # AttnProcessor2_0's signature, annotations included
        chain = self.chain
        if args or kwargs or chain.rows is not None or not chain.slots.active or torch.is_grad_enabled():
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if id(attn) in chain.folded:
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        constant = encoder_hidden_states is not None
        if torch.compiler.is_compiling():  # the stand-ins, the text context computed once per UNet call
            key_value = lambda context: chain.slots.key_value_inputs(context, constant)  # noqa: E731
        else:  # the original networks, the text context computed once per activation
            key_value = lambda context: chain.key_value_inputs(context, constant)  # noqa: E731
        return attention_2_0(attn, hidden_states, encoder_hidden_states, attention_mask, temb, key_value)


def attention_2_0(attn, hidden_states, encoder_hidden_states, attention_mask, temb, key_value) -> torch.Tensor:
    """`diffusers.models.attention_processor.AttnProcessor2_0.__call__`, except that
    `to_k` / `to_v` get `key_value(context)`'s two tensors instead of the context."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    input_ndim = hidden_states.ndim
    if input_ndim == 4:
        batch_size, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
    batch_size, sequence_length, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key_input, value_input = key_value(encoder_hidden_states)
    key = attn.to_k(key_input)
    value = attn.to_v(value_input)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
    hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
    hidden_states = hidden_states.to(query.dtype)
    hidden_states = attn.to_out[0](hidden_states)
    hidden_states = attn.to_out[1](hidden_states)
    if input_ndim == 4:
        hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor
