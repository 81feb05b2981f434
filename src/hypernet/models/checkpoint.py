"""Loading Stable Diffusion 1.x / 2.x checkpoints into diffusers, fully offline (SDXL: `sdxl.py`).

``load_pipeline`` takes what users have: a single ``.safetensors`` / ``.ckpt`` / ``.pt`` file in
the original (CompVis / webui) layout, or a diffusers pipeline folder. Single files are
converted with hypernet's own key tables (``layout.py``) into modules built from shipped
configs, so no model hub is ever asked; the tokenizer is hypernet's ftfy-correct one.
See docs/checkpoints.md for the rules (families, v-prediction, what is refused).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import HypernetError, HypernetFileError
from ..quiet import quiet_transformers
from .assembly import _assemble, _build_modules
from .configs import (
    FAMILIES,
    FAMILY_LAYOUT,
    METADATA_PREFIX,
    check_family,
    check_prediction_type,
    family_config,
    family_directory,
    read_config_directory,
)
from .identify import (
    CheckpointInfo,
    _cross_attention_dim,
    _prediction_type,
    _refuse_unknown,
    _stated_prediction_type,
    guess_prediction_type,
)
from .key_matching import _fill_modules, _resolve_config
from .layout import text_layout
from .tensor_file import open_tensor_file

__all__ = [
    "CheckpointInfo",
    "FAMILIES",
    "describe_checkpoint",
    "family_directory",
    "guess_prediction_type",
    "load_pipeline",
    "pipeline_from_config",
]

PROGRESS_MIN_BYTES = 256 * 1024**2  # smaller files load in a moment: no progress bar


def _is_sdxl_file(path: Path) -> bool:
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return False
    from .sdxl import is_sdxl_keys

    source = open_tensor_file(path)
    try:
        return is_sdxl_keys(source.keys)
    finally:
        source.close()


def describe_checkpoint(path: str | Path) -> CheckpointInfo:
    """Reads a single file's keys and shapes (not its weights) and says what it is."""
    source = open_tensor_file(path)
    try:
        from .sdxl import describe_sdxl, is_sdxl_keys, sdxl_config_directory

        if source.path.suffix.lower() == ".safetensors" and is_sdxl_keys(source.keys):
            facts = describe_sdxl(source)
            return CheckpointInfo(path=str(source.path), layout="sdxl", family=facts["family"],
                                  cross_attention_dim=facts["cross_attention_dim"] or 2048,
                                  prediction_type=facts["prediction_type"],
                                  config_source=str(sdxl_config_directory(facts["family"])))
        _refuse_unknown(source)
        layout = text_layout(source.keys)
        stated = _stated_prediction_type(source)
        family = "sd2-v" if layout == "sd2" and stated == "v_prediction" else None
        config, name, _, _ = _resolve_config(source, family, None, layout)
        return CheckpointInfo(
            path=str(source.path),
            layout=layout,
            family=name,
            cross_attention_dim=_cross_attention_dim(source),
            prediction_type=stated,
            config_source=config.source,
        )
    finally:
        source.close()


def _load_single_file(path: Path, family, prediction_type, dtype, device, config_dir, progress):
    source = open_tensor_file(path)
    try:
        _refuse_unknown(source)
        layout = text_layout(source.keys)
        if family is not None and FAMILY_LAYOUT[family] != layout:
            found = "an SD 1.x (CLIP ViT-L text encoder)" if layout == "sd1" else "an SD 2.x (OpenCLIP text encoder)"
            raise HypernetFileError(
                path,
                f"is {found} checkpoint with cross-attention width {_cross_attention_dim(source)}, "
                f"not family {family!r}",
            )
        decided = _prediction_type(source, layout, family, prediction_type, config_dir)
        wanted_family = family
        if wanted_family is None and layout == "sd2" and decided == "v_prediction":
            wanted_family = "sd2-v"
        config, name, modules, pairs = _resolve_config(source, wanted_family, config_dir, layout)
        if decided is None and (config_dir is not None or METADATA_PREFIX + "unet_config" in source.metadata):
            decided = config.scheduler.get("prediction_type", "epsilon")
        run_test_forward = decided is None
        if progress is None:
            progress = None if path.stat().st_size >= PROGRESS_MIN_BYTES else False
        unet_dtype = torch.float32 if run_test_forward else dtype
        _fill_modules(source, modules, pairs, lambda component: unet_dtype if component == "unet" else dtype, progress)
    finally:
        source.close()

    if run_test_forward:
        decided = guess_prediction_type(modules["unet"])
        if decided == "v_prediction" and name == "sd2":
            # Same weights, other settings: SD 2.x 768-v upcasts attention and samples 768 px.
            name, config = "sd2-v", family_config("sd2-v")
            rebuilt = _build_modules(config, empty=True)
            rebuilt["unet"].load_state_dict(modules["unet"].state_dict(), strict=True, assign=True)
            modules["unet"] = rebuilt["unet"]
            modules["vae"].register_to_config(sample_size=config.vae["sample_size"])
    return _assemble(modules, config, decided, dtype, device)


def _weights_variant(folder: Path) -> str | None:
    """ "fp16" when a component folder only has diffusers' fp16-variant weight files."""
    names = [path.name for path in folder.iterdir() if path.is_file()]
    plain = [n for n in names if n.endswith((".safetensors", ".bin")) and ".fp16." not in n]
    return "fp16" if not plain and any(".fp16." in n for n in names) else None


def _load_folder(path: Path, prediction_type, dtype, device):
    """Loads the three models one by one (diffusers' pipeline loader would also load the
    folder's tokenizer class, and a folder saved from a pipeline with a non-transformers
    tokenizer cannot be loaded by it), then assembles them with hypernet's tokenizer."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    if not (path / "model_index.json").is_file():
        raise HypernetFileError(path, "is a folder without model_index.json; expected a diffusers pipeline folder")
    config = read_config_directory(path)
    tokenizer_dir = path / "tokenizer"
    vocabulary = tokenizer_dir if (tokenizer_dir / "vocab.json").is_file() else None
    modules = {}
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        folder = path / name
        try:
            with quiet_transformers():
                modules[name] = cls.from_pretrained(
                    str(folder), local_files_only=True, torch_dtype=dtype, variant=_weights_variant(folder)
                )
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
            raise HypernetFileError(folder, f"cannot be loaded as the pipeline's {name} ({error})") from None
    decided = prediction_type or config.scheduler.get("prediction_type", "epsilon")
    return _assemble(modules, config, decided, dtype, device, tokenizer_directory=vocabulary)


def load_pipeline(
    path: str | Path,
    family: str | None = None,
    prediction_type: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    *,
    config: str | Path | None = None,
    progress: bool | None = None,
):
    """A ``diffusers.StableDiffusionPipeline`` (``StableDiffusionXLPipeline`` for SDXL) from a
    single-file checkpoint or a diffusers folder.

    ``family`` ("sd15", "sd2", "sd2-v", "sdxl", "sdxl-v") is detected when not given; ``prediction_type``
    ("epsilon" / "v_prediction") overrides every other source of it; ``config`` names a
    diffusers config folder to build the modules from instead of the shipped ones;
    ``progress`` forces the tqdm bar on or off (default: on for big files on a terminal).
    Never reaches a model hub. Raises ``HypernetFileError`` naming the file for anything
    missing, damaged, unsafe or not an SD 1.x/2.x model.
    """
    from .sdxl import SDXL_FAMILIES, is_sdxl_folder, load_sdxl_folder, load_sdxl_single_file

    if family is not None and family not in SDXL_FAMILIES:
        check_family(family)
    check_prediction_type(prediction_type)
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise HypernetError(f"dtype {dtype} is not one of torch.float32, torch.float16, torch.bfloat16")
    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        if is_sdxl_folder(path):
            return load_sdxl_folder(path, prediction_type, dtype, device)
        return _load_folder(path, prediction_type, dtype, device)
    if _is_sdxl_file(path):
        return load_sdxl_single_file(path, family, prediction_type, dtype, device, config)
    if family in SDXL_FAMILIES:
        raise HypernetFileError(path, "is not an SDXL .safetensors checkpoint (SDXL loads from .safetensors files with "
                                      f"conditioner.embedders.* keys), not family {family!r}")
    return _load_single_file(path, family, prediction_type, dtype, device, config, progress)


def pipeline_from_config(
    config: str | Path = "sd15",
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    prediction_type: str | None = None,
):
    """A pipeline with random weights from a shipped family ("sd15", "sd2", "sd2-v") or a config folder.

    For tests and benchmarks: same seed, same weights; the global RNG is left as it was.
    """
    if isinstance(config, str) and config in FAMILIES:
        pipeline_config = family_config(config)
    else:
        pipeline_config = read_config_directory(config)
    check_prediction_type(prediction_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        modules = _build_modules(pipeline_config, empty=False)
    return _assemble(modules, pipeline_config, prediction_type, dtype, device)
