"""Matching a single file's keys and shapes to diffusers modules: the key tables, the
config whose every shape fits (the caller's, the file's metadata, a shipped family, or
one inferred from the shapes), and filling the modules with the converted tensors."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..errors import HypernetFileError
from .assembly import _build_modules
from .configs import (
    FAMILIES,
    PipelineConfig,
    config_from_metadata,
    family_config,
    infer_config,
    matching_family,
    read_config_directory,
)
from .identify import _cross_attention_dim
from .layout import SD1_TEXT_PREFIX, SD2_TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX, KeyPair, text_pairs, unet_pairs, vae_pairs
from .tensor_file import TensorFile


def key_tables(modules: Mapping[str, torch.nn.Module], config: PipelineConfig, layout: str) -> list[KeyPair]:
    """Every parameter of the three modules and where the single file keeps it."""
    return (
        unet_pairs(modules["unet"].state_dict().keys(), config.unet)
        + vae_pairs(modules["vae"].state_dict().keys(), config.vae)
        + text_pairs(modules["text_encoder"].state_dict().keys(), layout)
    )


def _expected_shapes(modules, pairs: list[KeyPair]) -> dict[str, tuple[int, ...]]:
    states = {name: module.state_dict() for name, module in modules.items()}
    shapes = {}
    for pair in pairs:
        tensors = [states[pair.component][key] for key in pair.diffusers]
        meta = [torch.empty(t.shape, device="meta") for t in tensors]
        shapes[pair.original] = tuple(pair.to_original(meta).shape)
    return shapes


def _ignorable(key: str, layout: str) -> bool:
    """Keys a single file may hold that the diffusers modules have no use for."""
    if not key.startswith((UNET_PREFIX, VAE_PREFIX, "cond_stage_model.")):
        return True  # noise-schedule buffers, EMA copies, model_ema.*, ...
    if key.startswith(VAE_PREFIX + "loss."):
        return True
    if layout == "sd1":
        return key.endswith("embeddings.position_ids") or not key.startswith((UNET_PREFIX, VAE_PREFIX, SD1_TEXT_PREFIX))
    if key.startswith(SD2_TEXT_PREFIX):
        return key.endswith(("text_projection", "logit_scale", "attn_mask"))
    return not key.startswith((UNET_PREFIX, VAE_PREFIX))


def _mismatches(source: TensorFile, expected: Mapping[str, tuple[int, ...]], layout: str) -> list[str]:
    problems = []
    for key, shape in expected.items():
        if key not in source:
            problems.append(f"missing tensor {key}")
        elif source.shape(key) != shape:
            problems.append(f"{key} has shape {list(source.shape(key))}, expected {list(shape)}")
    last_block = None
    if layout == "sd2":
        blocks = {
            int(m[1])
            for k in source.keys
            if (m := re.match(re.escape(SD2_TEXT_PREFIX) + r"transformer\.resblocks\.(\d+)\.", k))
        }
        last_block = f"{SD2_TEXT_PREFIX}transformer.resblocks.{max(blocks)}." if blocks else None
    for key in source.keys:
        if key in expected or _ignorable(key, layout):
            continue
        if last_block and key.startswith(last_block):
            continue  # SD 2 never runs OpenCLIP's last block
        problems.append(f"unexpected tensor {key}")
    return problems


def _describe_problems(problems: list[str]) -> str:
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{shown}{more}"


def _check_plausible(config: PipelineConfig, source: TensorFile) -> None:
    """Metadata is untrusted: refuse configs with more layers than the file could hold
    before building them (a billion-layer config would hang the meta-device build)."""

    def small(value, limit: int) -> bool:
        values = value if isinstance(value, (list, tuple)) else [value]
        return all(isinstance(v, int) and 0 <= v <= limit for v in values)

    plausible = (
        small(config.text_encoder.get("num_hidden_layers", 0), len(source.keys) // 16)
        and small(config.unet.get("layers_per_block", 0), 32)
        and small(config.unet.get("transformer_layers_per_block", 1), 32)
        and small(config.vae.get("layers_per_block", 0), 32)
        and len(config.unet.get("block_out_channels", [])) <= 8
        and len(config.vae.get("block_out_channels", [])) <= 8
    )
    if not plausible:
        raise HypernetFileError(source.path, "the configuration in its metadata does not fit its tensors")


def _same_widths(source: TensorFile, config: PipelineConfig) -> bool:
    """A cheap first look: do the first UNet width and the cross-attention width match?"""
    first = source.shape(UNET_PREFIX + "input_blocks.0.0.weight")[0]
    return (
        first == config.unet["block_out_channels"][0]
        and _cross_attention_dim(source) == config.unet["cross_attention_dim"]
    )


def _resolve_config(source: TensorFile, family: str | None, config_dir, layout: str):
    """(config, shipped family name or None, empty modules, key table) for a single file.

    The config comes from the caller's folder, else the file's embedded metadata (both must
    fit exactly), else the family's shipped config when every shape fits it, else from the
    file's shapes with the family's other settings.
    """
    if config_dir is not None:
        config, name, strict = read_config_directory(config_dir), None, True
    else:
        config = config_from_metadata(source.metadata, source.path)
        strict = config is not None
        if config is not None:
            _check_plausible(config, source)
            name = matching_family(config)
        else:
            name = family or ("sd15" if layout == "sd1" else "sd2")
            config = family_config(name)
    if not strict and not _same_widths(source, config):
        problems = [f"widths differ from {name}'s (cross-attention {_cross_attention_dim(source)})"]
    else:
        modules = _build_modules(config, empty=True)
        pairs = key_tables(modules, config, layout)
        problems = _mismatches(source, _expected_shapes(modules, pairs), layout)
        if not problems:
            return config, (name if name in FAMILIES else None), modules, pairs
    if strict:
        raise HypernetFileError(
            source.path, f"does not match the configuration from {config.source}: {_describe_problems(problems)}"
        )
    try:
        inferred = infer_config(source.keys, source.shape, layout, config)
    except ValueError as error:
        raise HypernetFileError(
            source.path, f"does not match the {name} layout ({_describe_problems(problems)}), and {error}"
        ) from None
    modules = _build_modules(inferred, empty=True)
    pairs = key_tables(modules, inferred, layout)
    inferred_problems = _mismatches(source, _expected_shapes(modules, pairs), layout)
    if inferred_problems:
        raise HypernetFileError(
            source.path, f"is incomplete or of an unknown architecture: {_describe_problems(inferred_problems)}"
        )
    return inferred, None, modules, pairs


def _fill_modules(source: TensorFile, modules, pairs: list[KeyPair], dtype_of, show_progress: bool | None) -> None:
    from tqdm.auto import tqdm

    states: dict[str, dict[str, torch.Tensor]] = {name: {} for name in modules}
    bar = tqdm(
        pairs,
        desc=f"loading {source.path.name}",
        unit="tensor",
        disable=(None if show_progress is None else not show_progress),
        leave=False,
    )
    with bar:
        for pair in bar:
            try:
                converted = pair.to_diffusers(source.tensor(pair.original))
            except ValueError as error:
                raise HypernetFileError(source.path, str(error), key=pair.original) from None
            dtype = dtype_of(pair.component)
            for key, tensor in zip(pair.diffusers, converted, strict=True):
                states[pair.component][key] = tensor.to(dtype=dtype, copy=True)
    for name, module in modules.items():
        try:
            module.load_state_dict(states[name], strict=True, assign=True)
        except RuntimeError as error:
            raise HypernetFileError(source.path, f"the {name} weights do not fit its configuration ({error})") from None
