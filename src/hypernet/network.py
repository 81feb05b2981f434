"""The hypernetwork itself: per feature size, a pair of residual MLPs that rewrite the
tensors entering an attention layer's `to_k` and `to_v` (contract §2-§3). Torch only.

The module sequence is rebuilt exactly as the webui builds it, because activation,
LayerNorm and Dropout modules occupy indices in `linear.<i>` state-dict keys.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from .errors import HypernetConfigError, listing, short_repr
from .multipliers import effective_multiplier

DEFAULT_SIZES = (768, 320, 640, 1280)
# Bounds checked before any module is built, so a file's metadata (or a create form) can
# never ask for more than a machine can hold: real networks have 3-6 layer entries, sizes
# up to 2048 and up to a few hundred million parameters.
MAX_LAYERS = 100
MAX_FEATURE_SIZE = 65536
MAX_PARAMETERS = 2**30  # 4 GiB of fp32 weights


def _activation_table() -> dict[str, Callable[[], nn.Module]]:
    """Every activation name the webui accepts: its aliases, then each class defined in
    `torch.nn.modules.activation` under its lower-cased name (so the set follows torch)."""
    table: dict[str, Callable[[], nn.Module]] = {
        "linear": nn.Identity,
        "relu": nn.ReLU,
        "leakyrelu": nn.LeakyReLU,
        "elu": nn.ELU,
        "swish": nn.Hardswish,  # the webui's "swish" is Hardswish, not SiLU
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }
    module = torch.nn.modules.activation
    for name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__ and issubclass(cls, nn.Module):
            table.setdefault(name.lower(), cls)
    return table


ACTIVATIONS = _activation_table()


def _zero_bias(linear: nn.Linear) -> None:
    nn.init.zeros_(linear.bias)


def _kaiming_nonlinearity(activation: str | None) -> str:
    return "leaky_relu" if activation == "leakyrelu" else "relu"


def _init_normal(linear: nn.Linear, activation: str | None) -> None:
    nn.init.normal_(linear.weight, mean=0.0, std=0.01)
    _zero_bias(linear)


def _init_xavier_uniform(linear: nn.Linear, activation: str | None) -> None:
    nn.init.xavier_uniform_(linear.weight)
    _zero_bias(linear)


def _init_xavier_normal(linear: nn.Linear, activation: str | None) -> None:
    nn.init.xavier_normal_(linear.weight)
    _zero_bias(linear)


def _init_kaiming_uniform(linear: nn.Linear, activation: str | None) -> None:
    nn.init.kaiming_uniform_(linear.weight, nonlinearity=_kaiming_nonlinearity(activation))
    _zero_bias(linear)


def _init_kaiming_normal(linear: nn.Linear, activation: str | None) -> None:
    nn.init.kaiming_normal_(linear.weight, nonlinearity=_kaiming_nonlinearity(activation))
    _zero_bias(linear)


WEIGHT_INITS: dict[str, Callable[[nn.Linear, str | None], None]] = {
    "Normal": _init_normal,
    "XavierUniform": _init_xavier_uniform,
    "XavierNormal": _init_xavier_normal,
    "KaimingUniform": _init_kaiming_uniform,
    "KaimingNormal": _init_kaiming_normal,
    "ZeroLast": _init_xavier_normal,  # and the last Linear of each MLP zero: see Hypernetwork.initialize
}
ZERO_LAST = "ZeroLast"  # hypernet's own: starts as the exact identity with full-size gradients (docs/training.md)


def _choices(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def resolve_activation(name: str | None) -> str | None:
    """Canonical activation key (None for no activation); raises naming the valid ones."""
    if name is None:
        return None
    key = str(name).lower()
    if key in ("none", "linear"):
        return None  # both mean "no activation"; files keep saying "linear"
    if key not in ACTIVATIONS:
        raise HypernetConfigError(f"unknown activation {short_repr(name)}; valid names: {_choices(ACTIVATIONS)}")
    return key


def derive_dropout_structure(layer_structure: Sequence[float], use_dropout: bool, last_layer_dropout: bool) -> list[float]:
    """The dropout structure old files imply (contract §2.4)."""
    if not use_dropout:
        return [0.0] * len(layer_structure)
    return [0.0] + [0.3] * (len(layer_structure) - 3) + [0.3 if last_layer_dropout else 0.0] + [0.0]


@dataclass(frozen=True)
class Structure:
    """What determines the module sequence (and so the state-dict keys)."""

    layer_structure: tuple[float, ...] = (1, 2, 1)
    activation: str | None = None
    layer_norm: bool = False
    dropout_structure: tuple[float, ...] = (0.0, 0.0, 0.0)
    activate_output: bool = False

    def __post_init__(self):
        structure = tuple(self.layer_structure)
        shown = short_repr(list(structure))
        if len(structure) < 2:
            raise HypernetConfigError(f"layer_structure {shown} needs at least two entries, e.g. [1, 2, 1]")
        if len(structure) > MAX_LAYERS:
            raise HypernetConfigError(f"layer_structure has {len(structure)} entries; at most {MAX_LAYERS} are supported")
        if any(not isinstance(w, (int, float)) for w in structure):
            raise HypernetConfigError(f"layer_structure {shown} must hold positive numbers")
        if structure[0] != 1 or structure[-1] != 1:
            raise HypernetConfigError(f"layer_structure {shown} must start and end with 1, e.g. [1, 2, 1]")
        bad = [w for w in structure if not math.isfinite(w) or w <= 0]
        if bad:
            raise HypernetConfigError(f"layer_structure {shown} must hold positive finite numbers (not {listing(bad)})")
        object.__setattr__(self, "layer_structure", structure)
        object.__setattr__(self, "activation", resolve_activation(self.activation))
        dropout = tuple(float(p) for p in self.dropout_structure)
        if len(dropout) != len(structure):
            raise HypernetConfigError(f"dropout_structure {short_repr(list(dropout))} must have one entry per "
                                      f"layer_structure entry ({len(structure)})")
        bad = [p for p in dropout[1:] if p and not 0 < p < 1]
        if bad:
            raise HypernetConfigError(f"dropout probabilities must be in (0, 1) (not {listing(bad)}) "
                                      f"in {short_repr(list(dropout))}")
        object.__setattr__(self, "dropout_structure", dropout)

    def parameter_count(self, dim: int) -> int:
        """Parameters of one module for size `dim`, counted without building it."""
        widths = self.widths(dim)
        linear = sum(a * b + b for a, b in zip(widths, widths[1:]))
        return linear + (2 * sum(widths[1:]) if self.layer_norm else 0)

    def widths(self, dim: int) -> list[int]:
        return [int(dim * w) for w in self.layer_structure]

    def build_layers(self, dim: int) -> nn.Sequential:
        """Linear, [activation], [LayerNorm], [Dropout] per layer, in the webui's order."""
        widths = self.widths(dim)
        if min(widths) < 1:
            raise HypernetConfigError(f"layer_structure {short_repr(list(self.layer_structure))} gives a zero-width "
                                      f"layer for size {dim}")
        layers: list[nn.Module] = []
        last = len(widths) - 2
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if self.activation is not None and (i < last or self.activate_output):
                try:
                    layers.append(ACTIVATIONS[self.activation]())
                except TypeError as error:
                    raise HypernetConfigError(
                        f"activation {self.activation!r} cannot be built with default arguments ({error})"
                    ) from None
            if self.layer_norm:
                layers.append(nn.LayerNorm(widths[i + 1]))
            if self.dropout_structure[i + 1] > 0:
                layers.append(nn.Dropout(p=self.dropout_structure[i + 1]))
        return nn.Sequential(*layers)


@dataclass
class Metadata:
    """Descriptive fields carried in the file; none of them changes the forward pass."""

    name: str = "hypernetwork"
    step: int = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    optional_info: str | None = None
    weight_initialization: str = "Normal"
    use_dropout: bool = False
    last_layer_dropout: bool = False
    # (user multiplier, internal multiplier) points from (0, 0) to (1, 1): what a user's
    # multiplier means (`effective_multiplier`); `hypernet calibrate` fits it. Not webui.
    multiplier_calibration: tuple[tuple[float, float], ...] | None = None
    extra: dict = field(default_factory=dict)  # unknown string keys, kept for round trips


class HypernetworkModule(nn.Module):
    """One residual MLP: `x + mlp(x) * multiplier` (multiplier ignored in training mode)."""

    def __init__(self, dim: int, structure: Structure):
        super().__init__()
        self.dim = dim
        self.linear = structure.build_layers(dim)

    def forward(self, x: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
        if self.training:
            multiplier = 1.0
        elif multiplier == 0:
            return x  # bit-exact identity, also for -0.0 and non-finite MLP outputs
        parameter = next(self.parameters())
        y = self.linear(x.to(parameter.dtype)).to(x.dtype)
        return x + y * multiplier


    def affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(A, a)` with `mlp(x) = A x + a` (float64) when the MLP is affine as it runs now:
        eval mode, no activation, no LayerNorm (dropout is off in eval); else None.
        The webui's default `linear` networks are affine, so a chain of them folds into
        the projection that follows (`hypernet.folding`)."""
        if self.training:
            return None
        matrix = vector = None
        for layer in self.linear:
            if isinstance(layer, nn.Linear):
                weight, bias = layer.weight.detach().double(), layer.bias.detach().double()
                matrix = weight if matrix is None else weight @ matrix
                vector = bias if vector is None else weight @ vector + bias
            elif not isinstance(layer, (nn.Dropout, nn.Identity)):
                return None
        return matrix, vector


class Hypernetwork(nn.Module):
    """Per feature size, a (key-input, value-input) pair of `HypernetworkModule`s."""

    def __init__(self, sizes: Iterable[int], structure: Structure, metadata: Metadata | None = None, multiplier: float = 1.0):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if not sizes:
            raise HypernetConfigError("a hypernetwork needs at least one feature size, e.g. 768")
        if len(set(sizes)) != len(sizes):
            raise HypernetConfigError(f"feature sizes {listing(sizes)} contain duplicates")
        if any(s <= 0 for s in sizes):
            raise HypernetConfigError(f"feature sizes {listing(sizes)} must be positive integers")
        check_bounds(sizes, structure)
        self.structure = structure
        self.metadata = metadata or Metadata()
        self.multiplier = float(multiplier)
        self.source_path = None  # the file it was loaded from, if any
        self.pairs = nn.ModuleDict(
            {str(s): nn.ModuleList([HypernetworkModule(s, structure), HypernetworkModule(s, structure)]) for s in sizes}
        )

    # -- construction -------------------------------------------------------------
    @classmethod
    def create(
        cls,
        sizes: Iterable[int] = DEFAULT_SIZES,
        layer_structure: Sequence[float] = (1, 2, 1),
        activation: str | None = "linear",
        weight_init: str = "Normal",
        layer_norm: bool = False,
        dropout_structure: Sequence[float] | None = None,
        activate_output: bool = False,
        name: str = "hypernetwork",
        optional_info: str | None = None,
        generator_seed: int | None = None,
    ) -> "Hypernetwork":
        """A freshly initialised network, as the webui's create form makes one (§2.5, §6)."""
        if weight_init not in WEIGHT_INITS:
            raise HypernetConfigError(f"unknown weight_init {weight_init!r}; valid names: {_choices(WEIGHT_INITS)}")
        use_dropout = dropout_structure is not None and any(float(p) for p in dropout_structure)
        dropout = tuple(dropout_structure) if dropout_structure is not None else (0.0,) * len(layer_structure)
        structure = Structure(tuple(layer_structure), activation, layer_norm, dropout, activate_output)
        metadata = Metadata(
            name=name,
            optional_info=optional_info,
            weight_initialization=weight_init,
            use_dropout=use_dropout,
            last_layer_dropout=len(dropout) > 1 and dropout[-2] != 0,
        )
        fork = torch.random.fork_rng(devices=[]) if generator_seed is not None else contextlib.nullcontext()
        with fork:
            if generator_seed is not None:
                torch.manual_seed(generator_seed)
            network = cls(sizes, structure, metadata)
            network.initialize(weight_init)
        network.eval()  # ready to apply; a trainer switches to train() itself
        return network

    def initialize(self, weight_init: str) -> None:
        initialize = WEIGHT_INITS[weight_init]
        for module in self.modules():
            if isinstance(module, nn.Linear):
                initialize(module, self.structure.activation)
            elif isinstance(module, nn.LayerNorm):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)  # always, whatever the init (§2.5)
                nn.init.zeros_(module.bias)
        if weight_init == ZERO_LAST:
            # The webui's inits make both layers tiny (Normal) or the output large (Xavier,
            # Kaiming): tiny layers start on a saddle (each layer's gradient is scaled by
            # the other's weights), large ones start far from the base model. A zero last
            # layer starts exactly at the base with full-size gradients, as LoRA does.
            for module in self.modules():
                if isinstance(module, HypernetworkModule):
                    last = [layer for layer in module.modules() if isinstance(layer, nn.Linear)][-1]
                    nn.init.zeros_(last.weight)

    # -- introspection -------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return [int(s) for s in self.pairs.keys()]

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def step(self) -> int:
        return self.metadata.step

    def pair(self, size: int) -> nn.ModuleList | None:
        """The (k, v) modules for a feature size, or None when the file lacks that size."""
        return self.pairs[str(size)] if str(size) in self.pairs else None

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def effective_multiplier(self, multiplier: float) -> float:
        """The multiplier the MLPs run at for a user's `multiplier`, through the file's
        calibration curve (unchanged without one). Applied once, where a chain enters the
        UNet (`hypernet.attention`); prompts, infotext and training keep the user's."""
        return effective_multiplier(self.metadata.multiplier_calibration, multiplier)

    # -- forward -----------------------------------------------------------------------
    def forward(self, context: torch.Tensor, multiplier: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(key input, value input) for an attention layer receiving `context`."""
        return apply_chain([(self, self.multiplier if multiplier is None else multiplier)], context)

    def __repr__(self) -> str:
        s = self.structure
        return (
            f"Hypernetwork(name={self.name!r}, sizes={self.sizes}, layer_structure={list(s.layer_structure)}, "
            f"activation={s.activation or 'linear'!r}, layer_norm={s.layer_norm}, multiplier={self.multiplier})"
        )


def check_bounds(sizes: Sequence[int], structure: Structure) -> None:
    """Refuse, before anything is allocated, sizes and structures beyond the bounds above."""
    large = [size for size in sizes if size > MAX_FEATURE_SIZE]
    if large:
        raise HypernetConfigError(f"feature size {short_repr(large[0])} is larger than {MAX_FEATURE_SIZE} "
                                  "(Stable Diffusion's are 320 to 2048)")
    try:
        count = 2 * sum(structure.parameter_count(size) for size in sizes)
    except OverflowError:  # a width beyond any float
        count = math.inf
    if count > MAX_PARAMETERS:
        shown = f"{count:,}" if count < 10**18 else "more than 10^18"
        raise HypernetConfigError(f"sizes {listing(sizes)} with layer_structure {short_repr(list(structure.layer_structure))} "
                                  f"make {shown} parameters; at most {MAX_PARAMETERS:,} are supported")


def _with_multiplier(entry) -> tuple[Hypernetwork, float]:
    if isinstance(entry, Hypernetwork):
        return entry, entry.multiplier
    network, multiplier = entry
    return network, float(multiplier)


def apply_chain(networks: Iterable, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `context` through several hypernetworks in order (contract §3.2).

    `networks` holds `Hypernetwork`s (using their own `multiplier`) or `(network,
    multiplier)` pairs. The key and value inputs chain separately; each network's pair is
    looked up by the key input's last dimension, and a size a network lacks passes through.
    """
    key_input = value_input = context
    for entry in networks:
        network, multiplier = _with_multiplier(entry)
        pair = network.pair(key_input.shape[-1])
        if pair is None:
            continue
        key_input = pair[0](key_input, multiplier)
        value_input = pair[1](value_input, multiplier)
    return key_input, value_input

