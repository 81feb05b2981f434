"""`export_lora`: a hypernetwork as a LoRA file for one base model."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import HypernetError
from ..fileio import sha256
from ..network import Hypernetwork
from . import fit as fitting
from .deltas import exact_deltas, is_affine
from .files import check_output, layout_writer, lora_tensors, resolve_dtype, write_lora
from .lowrank import check_rank_request, factorize
from .targets import find_targets, text_layer_norm


@dataclass
class LayerReport:
    module: str  # e.g. down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k
    rank: int
    error: float  # relative output error (see ExportReport.error_measured_on)
    bias: str  # how the constant part of the change was handled


@dataclass
class ExportReport:
    path: Path
    layout: str
    method: str  # "exact" (affine network) or "fit" (least squares over activations)
    multiplier: float
    error_measured_on: str
    bytes_on_disk: int
    layers: list[LayerReport] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max((layer.error for layer in self.layers), default=0.0)

    @property
    def ranks(self) -> list[int]:
        return sorted({layer.rank for layer in self.layers})


def _rank_request(rank, error) -> str:
    if rank is not None:
        return str(rank)
    return f"smallest with relative error <= {error:g}" if error is not None else "full"


def _source_hash(network: Hypernetwork) -> str:
    path = getattr(network, "source_path", None)
    if path and Path(path).is_file():
        return sha256(path)
    return "unknown (not loaded from a file)"


def _metadata(network, base_model, multiplier, method, rank, error, layers, measured_on, prompt_count, path) -> dict:
    name = getattr(base_model, "name", None) or "unknown"
    model_hash = getattr(base_model, "hash", None)
    base = f"{name} [{model_hash}]" if model_hash else name
    ranks = sorted({layer.rank for layer in layers})
    errors = [layer.error for layer in layers]
    return {
        "hypernet_source_name": network.name,
        "hypernet_source_sha256": _source_hash(network),
        "hypernet_multiplier": f"{multiplier:g}",
        "hypernet_method": method,
        "hypernet_rank": json.dumps({"requested": _rank_request(rank, error), "min": ranks[0], "max": ranks[-1]}),
        "hypernet_fit_error": json.dumps({
            "max": max(errors), "mean": sum(errors) / len(errors), "measured_on": measured_on,
            **({"prompts": prompt_count} if prompt_count else {}),
        }),
        "hypernet_layers": json.dumps([layer.__dict__ for layer in layers]),
        "hypernet_base_model": json.dumps({"name": name, "hash": model_hash}),
        "hypernet_note": (
            f"computed for the base model {base}: the LoRA is the hypernetwork's change times that model's "
            "to_k/to_v weights, so on another base model it does not reproduce the hypernetwork"
        ),
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(ranks[-1]),
        "ss_network_alpha": str(ranks[-1]),
        "ss_sd_model_name": name,
        "ss_output_name": Path(path).stem,
    }


def export_lora(pipe, network: Hypernetwork, path, *, multiplier: float = 1.0, rank: int | None = None,
                error: float | None = None, layout: str = "kohya", fold_value_bias: bool = True,
                prompts: list[str] | None = None, steps: int = 20, seed: int = 0, base_model=None,
                dtype: str = "float32", fit: bool = False, on_prompt=None) -> ExportReport:
    """Write the LoRA (on to_k/to_v of every attention layer the network reaches) that
    reproduces `network` at `multiplier` on `pipe`'s model.

    Affine networks (linear activation, no LayerNorm) give the exact delta, truncated to
    `rank` (or the smallest rank meeting the relative `error`; default: full rank, exact).
    Others are fitted by least squares over the activations of `prompts` generated with
    `steps` steps; `fit` fits an affine network too (its full-rank fit is the exact delta,
    and the truncation is weighed by real activations instead of a model of them).
    `base_model` (a `ModelInfo`) names the model in the file's metadata.
    """
    check_rank_request(rank, error)
    check_output(path)
    layout_writer(layout)
    if not math.isfinite(multiplier):
        raise HypernetError(f"multiplier {multiplier} must be a finite number")
    torch_dtype = resolve_dtype(dtype)
    targets = find_targets(pipe.unet, set(network.sizes), text_layer_norm(getattr(pipe, "text_encoder", None)))
    if not targets:
        from ..attention import attention_widths

        raise HypernetError(f"network {network.name!r} has sizes {network.sizes}, none of this model's attention "
                            f"widths {attention_widths(pipe.unet)}: it would change nothing here")
    moments = None
    if is_affine(network) and not fit:
        method, measured_on, prompt_count = "exact", "the exact delta (what the rank leaves out)", 0
        deltas = exact_deltas(network, targets, network.effective_multiplier(multiplier), fold_value_bias)
    else:
        if not prompts:
            why = "a fit was asked for" if fit else "it is not affine (activation or layer norm)"
            raise HypernetError(f"network {network.name!r}: {why}, so its LoRA is fitted over activations; "
                                "give prompts (--prompts FILE)")
        method, prompt_count = "fit", len(prompts)
        moments = fitting.collect(pipe, network, multiplier, targets, prompts, steps, seed, on_prompt)
        deltas = fitting.fitted_deltas(targets, moments)
        measured_on = ""
    if all(not torch.any(layer.delta) for layer in deltas):
        raise HypernetError(f"network {network.name!r} changes nothing at multiplier {multiplier:g} (every layer's "
                            "change is zero: a network just created, with its last layers zero, or multiplier 0); "
                            "train it first, or give another multiplier. Nothing was written.")
    factors, layers = {}, []
    for layer in deltas:
        kept = factorize(layer.delta, rank, error, layer.root, layer.total)
        layer_error = kept.error
        if moments is not None:
            layer_error, measured_on = fitting.held_out_error(layer, kept.delta(), moments)
        factors[layer.key] = (kept.up, kept.down)
        layers.append(LayerReport(layer.key, kept.rank, float(layer_error), layer.bias))
    if moments is not None:
        measured_on = f"activations of the {measured_on}"
    metadata = _metadata(network, base_model, multiplier, method, rank, error, layers, measured_on, prompt_count, path)
    size = write_lora(path, lora_tensors(layout, factors, torch_dtype), metadata)
    return ExportReport(Path(path), layout, method, float(multiplier), measured_on, size, layers, metadata)

