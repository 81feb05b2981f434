"""The webui's in-file dictionary (contract §1.2-§1.3, §2.2) <-> `Hypernetwork`.

Shared by the `.pt` and `.safetensors` layouts: both reduce a file to metadata plus one
(key, value) state dict per feature size, and this module turns that into a network with
the webui's load-time defaults, strictly, or names the key that is wrong.
"""

from __future__ import annotations

import collections
from typing import Any, Mapping

import torch

from ..errors import HypernetConfigError, HypernetFileError, listing, short_repr
from ..multipliers import CALIBRATION_KEY, check_calibration
from ..network import Hypernetwork, Metadata, Structure, derive_dropout_structure

# Metadata keys the webui writes, with the value assumed when a file lacks one (§1.2).
LOAD_DEFAULTS: dict[str, Any] = {
    "layer_structure": [1, 2, 1],
    "activation_func": None,
    "is_layer_norm": False,
    "use_dropout": False,
    "weight_initialization": "Normal",
    "activate_output": True,  # old files applied the activation after the output layer
    "last_layer_dropout": False,
    "dropout_structure": None,
    "optional_info": None,
    "step": 0,
    "name": None,
    "sd_checkpoint": None,
    "sd_checkpoint_name": None,
}

# Keys of this package's own (the webui ignores them on load, §1.2): absent means None.
OWN_KEYS: dict[str, Any] = {CALIBRATION_KEY: None}
KNOWN_KEYS = {**LOAD_DEFAULTS, **OWN_KEYS}

_LEGACY_RENAMES = {"linear1.": "linear.0.", "linear2.": "linear.1."}


def _is_module_entry(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, Mapping) for v in value)


def size_key(path, key) -> int:
    if isinstance(key, bool):
        raise HypernetFileError(path, "feature-size key must be an integer such as 768", key=str(key))
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        if len(key.strip()) > 9:  # no attention layer is that wide; int() of 4300+ digits even fails
            raise HypernetFileError(path, "feature-size key is far too large (Stable Diffusion's are 320 to 2048)",
                                    key=_key_text(key))
        return int(key)
    raise HypernetFileError(path, "feature-size key must be an integer such as 768", key=_key_text(key))


def _key_text(key) -> str:
    text = key if isinstance(key, str) else short_repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


def split_entries(data: Mapping, path) -> tuple[dict[int, tuple[Mapping, Mapping]], dict[str, Any]]:
    """Separate the per-size module entries from the metadata keys."""
    modules: dict[int, tuple[Mapping, Mapping]] = {}
    metadata: dict[str, Any] = {}
    for key, value in data.items():
        if _is_module_entry(value):
            modules[size_key(path, key)] = (value[0], value[1])
        elif isinstance(key, str) and not key.strip().isdigit():
            metadata[key] = value
        else:
            raise HypernetFileError(
                path, f"expected a pair (key-input, value-input) of state dicts, found {type(value).__name__}",
                key=_key_text(key)
            )
    if not modules:
        raise HypernetFileError(path, "holds no hypernetwork modules (no integer feature-size keys such as 768)")
    return modules, metadata


def _rename_legacy(state: Mapping) -> dict:
    renamed = {}
    for key, value in state.items():
        for old, new in _LEGACY_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
        renamed[key] = value
    return renamed


def _as_bool(path, key, value) -> bool:
    if isinstance(value, (bool, int)) or value is None:
        return bool(value)
    raise HypernetFileError(path, f"expected true/false, found {short_repr(value)}", key=key)


def structure_from_metadata(metadata: Mapping, path) -> tuple[Structure, Metadata]:
    """Resolve metadata with the webui's load defaults (§2.2)."""
    values = {**LOAD_DEFAULTS, **{k: v for k, v in metadata.items() if k in LOAD_DEFAULTS}}
    layer_structure = values["layer_structure"]
    if layer_structure is None:
        layer_structure = LOAD_DEFAULTS["layer_structure"]
    if not isinstance(layer_structure, (list, tuple)) or not all(
        isinstance(w, (int, float)) and not isinstance(w, bool) for w in layer_structure
    ):
        raise HypernetFileError(path, f"expected a list of numbers such as [1, 2, 1], found {short_repr(layer_structure)}",
                                key="layer_structure")
    dropout = values["dropout_structure"]
    use_dropout = _as_bool(path, "use_dropout", values["use_dropout"])
    last_layer_dropout = _as_bool(path, "last_layer_dropout", values["last_layer_dropout"])
    if dropout is not None:
        if not isinstance(dropout, (list, tuple)) or not all(isinstance(p, (int, float)) for p in dropout):
            raise HypernetFileError(path, f"expected a list of probabilities, found {short_repr(dropout)}",
                                    key="dropout_structure")
        use_dropout = any(dropout) or use_dropout
    else:
        dropout = derive_dropout_structure(layer_structure, use_dropout, last_layer_dropout)
    activation = values["activation_func"]
    if activation is not None and not isinstance(activation, str):
        raise HypernetFileError(path, f"expected an activation name, found {short_repr(activation)}", key="activation_func")
    try:
        structure = Structure(
            layer_structure=tuple(layer_structure),
            activation=activation,
            layer_norm=_as_bool(path, "is_layer_norm", values["is_layer_norm"]),
            dropout_structure=tuple(dropout),
            activate_output=_as_bool(path, "activate_output", values["activate_output"]),
        )
    except HypernetConfigError as error:
        key = "activation_func" if "activation" in str(error) else (
            "dropout_structure" if "dropout" in str(error) else "layer_structure"
        )
        raise HypernetFileError(path, str(error), key=key) from None
    step = values["step"]
    if not isinstance(step, int) or isinstance(step, bool):
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise HypernetFileError(path, f"expected an integer step count, found {short_repr(step)}", key="step") from None
    extra = {k: v for k, v in metadata.items() if k not in KNOWN_KEYS}
    calibration = metadata.get(CALIBRATION_KEY)
    if calibration is not None:
        try:
            calibration = check_calibration(calibration)
        except HypernetConfigError as error:
            raise HypernetFileError(path, f"{error} (remove it with `hypernet calibrate NAME --remove`)",
                                    key=CALIBRATION_KEY) from None
    info = Metadata(
        name=values["name"] if isinstance(values["name"], str) else "",
        step=step,
        sd_checkpoint=values["sd_checkpoint"],
        sd_checkpoint_name=values["sd_checkpoint_name"],
        optional_info=values["optional_info"],
        weight_initialization=values["weight_initialization"] if isinstance(values["weight_initialization"], str) else "Normal",
        use_dropout=use_dropout,
        last_layer_dropout=last_layer_dropout,
        multiplier_calibration=calibration,
        extra=extra,
    )
    return structure, info


def network_from_entries(modules: Mapping[int, tuple[Mapping, Mapping]], metadata: Mapping, path, default_name: str) -> Hypernetwork:
    """Build a network and load every module strictly; errors name the file and key."""
    structure, info = structure_from_metadata(metadata, path)
    if not info.name:
        info.name = default_name
    try:
        with torch.device("meta"):  # no throw-away random init: the file's tensors are assigned below
            network = Hypernetwork(list(modules), structure, info)
    except HypernetConfigError as error:
        raise HypernetFileError(path, str(error)) from None
    assigned: set[int] = set()
    for size, states in modules.items():
        pair = network.pair(size)
        for which, state, module in zip(("key", "value"), states, pair):
            where = f"{size}[{0 if which == 'key' else 1}]"
            state = _rename_legacy(state)
            _check_types(path, where, state)
            expected = module.state_dict()
            missing = [k for k in expected if k not in state]
            unexpected = [k for k in state if k not in expected]
            if missing or unexpected:
                raise HypernetFileError(
                    path,
                    f"the {which}-input module does not match layer_structure "
                    f"{short_repr(list(structure.layer_structure))}, activation {structure.activation or 'linear'!r}, "
                    f"layer norm {structure.layer_norm}, dropout {short_repr(list(structure.dropout_structure))}: "
                    f"missing {listing(missing) or 'nothing'}, unexpected {listing(unexpected) or 'nothing'}",
                    key=where,
                )
            for name, tensor in state.items():
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise HypernetFileError(
                        path,
                        f"shape {short_repr(list(tensor.shape))} where the structure needs {list(expected[name].shape)}",
                        key=f"{where}.{name}",
                    )
            _check_finite(path, where, state)  # after the shapes: every tensor is now of a bounded size
            tensors = {}
            for name, tensor in state.items():
                tensor = tensor.to(torch.float32).contiguous()
                if id(tensor) in assigned:  # a file may reuse one tensor for k and v: keep them separate
                    tensor = tensor.clone()
                assigned.add(id(tensor))
                tensors[name] = tensor
            module.load_state_dict(tensors, strict=True, assign=True)
    network.eval()
    network.requires_grad_(False)
    return network


def _check_types(path, where: str, state: Mapping) -> None:
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise HypernetFileError(path, f"expected tensors under string keys, found {type(tensor).__name__}",
                                    key=f"{where}.{_key_text(name)}")
        if not tensor.is_floating_point():
            raise HypernetFileError(path, f"expected floating-point weights, found {tensor.dtype}", key=f"{where}.{name}")


def _check_finite(path, where: str, state: Mapping) -> None:
    for name, tensor in state.items():
        # one reduction is far cheaper than an element-wise mask; a non-finite sum is then
        # checked exactly (huge finite values can overflow a float32 sum)
        if not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
            raise HypernetFileError(path, "holds NaN or infinite values; the file is damaged or training diverged", key=f"{where}.{name}")


def metadata_to_dict(network: Hypernetwork) -> dict[str, Any]:
    """Metadata as the current webui writes it (plus any unknown keys the file carried)."""
    s, m = network.structure, network.metadata
    own = {}
    if m.multiplier_calibration is not None:  # only then: files without a curve stay as the webui writes them
        own[CALIBRATION_KEY] = [[float(user), float(internal)] for user, internal in m.multiplier_calibration]
    return {
        **m.extra,
        **own,
        "layer_structure": list(s.layer_structure),
        "activation_func": s.activation if s.activation is not None else "linear",
        "is_layer_norm": s.layer_norm,
        "weight_initialization": m.weight_initialization,
        "sd_checkpoint": m.sd_checkpoint,
        "sd_checkpoint_name": m.sd_checkpoint_name,
        "activate_output": s.activate_output,
        "use_dropout": m.use_dropout or any(s.dropout_structure),
        "dropout_structure": list(s.dropout_structure),
        "last_layer_dropout": len(s.dropout_structure) > 1 and s.dropout_structure[-2] != 0,
        "optional_info": m.optional_info,
        "step": m.step,
        "name": m.name,
    }


def module_states(network: Hypernetwork) -> dict[int, tuple[collections.OrderedDict, collections.OrderedDict]]:
    """Per size, the (key, value) state dicts, detached copies on the CPU."""
    result = {}
    for size in network.sizes:
        k, v = network.pair(size)
        result[size] = tuple(
            collections.OrderedDict((name, t.detach().to("cpu").clone().contiguous()) for name, t in m.state_dict().items())
            for m in (k, v)
        )
    return result


def network_to_dict(network: Hypernetwork) -> dict:
    """The dictionary a webui `.pt` holds."""
    data: dict = {}
    for size, states in module_states(network).items():
        data[size] = states
    data.update(metadata_to_dict(network))
    return data
