"""One hypernetwork output per UNet call for the text context.

Every cross-attention layer of a UNet call receives the very same text-context tensor,
and a hypernetwork maps it to the same key and value inputs in each of them (16 layers in
SD 1.x/2.x). Generation caches that output; under autograd the attention module computes
it again in every layer. During training this module's stand-in network remembers the
output per input tensor for one micro-batch, so the context passes through the MLPs once
and its gradient is the sum over the layers that used it: the same update, up to float
summation order, for a fraction of the work (about a quarter of a small-resolution SD
forward pass).

It is not used for networks with dropout (each layer drew its own dropout mask in the
webui, and a shared output would share one mask) or with gradient checkpointing.
"""

from __future__ import annotations

import torch
from torch import nn

from ..network import Hypernetwork


class _Remembering:
    """Calls a `HypernetworkModule`, remembering its output for the context tensor only
    (other inputs differ in every layer: keeping them would only hold memory)."""

    def __init__(self, module, owner: "SharedContextNetwork", side: int):
        self.module = module
        self.owner = owner
        self.side = side

    def __call__(self, x: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        if x is not self.owner.context:
            return self.module(x, multiplier)
        entry = self.owner.memory.get(self.side)
        if entry is not None and entry[0] == x._version:
            return entry[1]
        output = self.module(x, multiplier)
        self.owner.memory[self.side] = (x._version, output)
        return output


class SharedContextNetwork(Hypernetwork):
    """Stands in for `network` in the attention chain; its parameters are the network's."""

    def __init__(self, network: Hypernetwork):
        nn.Module.__init__(self)
        self.inner = network
        self.context: torch.Tensor | None = None
        self.memory: dict = {}
        self._pairs = {}

    @property
    def structure(self):
        return self.inner.structure

    @property
    def metadata(self):
        return self.inner.metadata

    @property
    def multiplier(self) -> float:
        return self.inner.multiplier

    @property
    def sizes(self) -> list[int]:
        return self.inner.sizes

    def pair(self, size: int):
        pair = self.inner.pair(size)
        if pair is None:
            return None
        if size not in self._pairs:
            self._pairs[size] = (_Remembering(pair[0], self, 0), _Remembering(pair[1], self, 1))
        return self._pairs[size]

    def begin(self, context: torch.Tensor) -> None:
        """The text context of the next UNet call (the tensor passed as encoder_hidden_states)."""
        self.context = context
        self.memory.clear()

    def forget(self) -> None:
        """Call after each micro-batch: the next one has new inputs and new weights."""
        self.context = None
        self.memory.clear()


def can_share(network: Hypernetwork, checkpointing: bool) -> bool:
    return not checkpointing and not any(p > 0 for p in network.structure.dropout_structure)
