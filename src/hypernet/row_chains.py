"""Different hypernetwork chains for different rows of one UNet batch.

A server that batches the requests of several users runs one UNet call whose rows carry
different chains (or none). `attention.activate_rows` plans, once per activation and per
attention layer, what each row gets there. A row's chain is first restricted to the
networks that have a module for the layer's width (the others pass its input through,
as in `apply_chain`); then

* every row has the same restricted chain: the layer is a single-chain layer, untouched
  when that chain is empty, folded into the weights when it folds (`hypernet.folding`),
  else its MLPs run on the whole batch;
* otherwise rows with equal restricted chains form a group: each group runs its chain
  once on its rows (`index_select`), and the key/value inputs are put back in row order
  with one `cat` and one `index_select` (a loop over groups, never over rows).

Layers with the same grouping share one `LayerRows`, so the text context, the same tensor
in every cross-attention layer, is still computed once per activation (the cache of
`attention.ActiveChain` is keyed by the context and the `LayerRows`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import folding
from .errors import HypernetError
from .network import apply_chain

Chain = tuple  # tuple[tuple[Hypernetwork, float], ...], multiplier-0 entries dropped


class LayerRows:
    """The key/value inputs of the attention layers that share one grouping of rows."""

    def __init__(self, groups: Sequence[tuple[Chain, Sequence[int]]], device):
        self.chains = [chain for chain, _ in groups]
        self.rows = [torch.tensor(rows, dtype=torch.long, device=device) for _, rows in groups]
        order = torch.tensor([row for _, rows in groups for row in rows], dtype=torch.long, device=device)
        self.inverse = torch.argsort(order)  # position of each row in the concatenated groups

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.chains) == 1:  # one chain for the whole batch: no gather
            return apply_chain(self.chains[0], x)
        keys, values = [], []
        for chain, rows in zip(self.chains, self.rows):
            key, value = apply_chain(chain, x.index_select(0, rows.to(x.device)))
            keys.append(key)
            values.append(value)
        inverse = self.inverse.to(x.device)
        return torch.cat(keys).index_select(0, inverse), torch.cat(values).index_select(0, inverse)


class RowPlan:
    """What each attention layer does with the rows of an `activate_rows` block: the
    `LayerRows` of a layer that runs MLPs, none for a folded or untouched one."""

    def __init__(self, rows: int, layers: dict[int, LayerRows]):
        self.rows = rows
        self.layers = layers  # id(attention module) -> LayerRows

    def layer(self, attention, batch: int) -> LayerRows | None:
        if batch != self.rows:
            raise HypernetError(f"this block was activated for {self.rows} rows; the UNet got {batch} "
                                f"(activate_rows takes one chain per row of the UNet batch, both halves under CFG)")
        return self.layers.get(id(attention))


def restrict(chain: Chain, width: int) -> Chain:
    """The networks of `chain` that have a module for `width`: the others pass through."""
    return tuple((network, multiplier) for network, multiplier in chain if network.pair(width) is not None)


def _width(module) -> int | None:
    to_k = getattr(module, "to_k", None)
    width = getattr(folding.plain_projection(to_k) or to_k, "in_features", None)
    return int(width) if isinstance(width, int) else None


def plan_layers(unet, row_chains: Sequence[Chain], fold: bool, cache: folding.FoldCache, swapped: list) -> tuple[RowPlan, set[int]]:
    """Plan every attention layer of `unet` for `row_chains` (one normalised chain per
    row); folds are swapped in as planned (what to put back is appended to `swapped`).
    Returns the plan and the ids of the folded attention modules."""
    distinct: dict[Chain, list[int]] = {}
    for row, chain in enumerate(row_chains):
        distinct.setdefault(chain, []).append(row)
    can_fold = fold and not any(network.training for chain in distinct for network, _ in chain)  # as `apply_folds`
    device = next(unet.parameters()).device
    shared: dict[tuple, LayerRows] = {}
    layers: dict[int, LayerRows] = {}
    folded: set[int] = set()
    for module in unet.modules():
        width = _width(module)
        if width is None:
            continue
        groups: dict[Chain, list[int]] = {}
        for chain, rows in distinct.items():
            groups.setdefault(restrict(chain, width), []).extend(rows)
        if len(groups) == 1:
            (only,) = groups
            if not only:
                continue  # no row's network reaches this width
            layer = folding.foldable_layer(module) if can_fold else None
            if layer is not None and folding.fold_layer(layer, only, cache, swapped):
                folded.add(id(module))
                continue
        ordered = sorted(((chain, sorted(rows)) for chain, rows in groups.items()), key=lambda group: group[1][0])
        key = tuple((chain, tuple(rows)) for chain, rows in ordered)
        if key not in shared:
            shared[key] = LayerRows(ordered, device)
        layers[id(module)] = shared[key]
    return RowPlan(len(row_chains), layers), folded
