"""Loading Stable Diffusion 1.x / 2.x checkpoints into diffusers, fully offline.

``load_pipeline`` takes what users have: a single ``.safetensors`` / ``.ckpt`` / ``.pt`` file in
the original (CompVis / webui) layout, or a diffusers pipeline folder. Single files are
converted with hypernet's own key tables (``layout.py``) into modules built from shipped
configs, so no model hub is ever asked; the tokenizer is hypernet's ftfy-correct one.
See docs/checkpoints.md for the rules (families, v-prediction, what is refused).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import HypernetError, HypernetFileError
from ..quiet import quiet_transformers
from .configs import (
    FAMILIES,
    FAMILY_LAYOUT,
    METADATA_PREFIX,
    SCHEDULER_CLASSES,
    PipelineConfig,
    check_family,
    check_prediction_type,
    config_from_metadata,
    family_config,
    family_directory,
    infer_config,
    matching_family,
    read_config_directory,
)
from .layout import (
    CROSS_ATTENTION_PROBE,
    SD1_TEXT_PREFIX,
    SD1_TEXT_PREFIX_OLD,
    SD2_TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    KeyPair,
    normalise_text_keys,
    text_layout,
    text_pairs,
    unet_pairs,
    vae_pairs,
)
from .safe_pickle import load_torch_file
from .tokenizer import load_clip_tokenizer

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
V_PREDICTION_THRESHOLD = -1.0


# --- reading tensors --------------------------------------------------------------------------


class TensorFile:
    """The tensors of one checkpoint file, read lazily where the format allows."""

    def __init__(self, path: Path, keys: list[str], metadata: dict[str, str]):
        self.path = path
        self.keys = keys
        self.metadata = metadata
        self.aliases: dict[str, str] = {}  # today's key -> key as stored (old text encoder names)
        self.other_keys: list[str] = []  # top-level entries that are not tensors (pickles only)

    def stored(self, key: str) -> str:
        return self.aliases.get(key, key)

    def __contains__(self, key: str) -> bool:
        return key in self._key_set

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def tensor(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _index(self) -> None:
        self.aliases = normalise_text_keys(self.keys)
        if self.aliases:
            self.keys = [key for key in self.keys if not key.startswith(SD1_TEXT_PREFIX_OLD)] + list(self.aliases)
        self._key_set = set(self.keys)


class SafetensorsFile(TensorFile):
    def __init__(self, path: Path):
        from safetensors import SafetensorError, safe_open

        try:
            self._handle = safe_open(str(path), framework="pt", device="cpu")
            keys = list(self._handle.keys())
            metadata = dict(self._handle.metadata() or {})
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise HypernetFileError(
                path, f"not a readable .safetensors file, perhaps truncated or corrupt ({error})"
            ) from None
        super().__init__(path, keys, metadata)
        self._index()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(self.stored(key)).get_shape())

    def tensor(self, key: str) -> torch.Tensor:
        try:
            return self._handle.get_tensor(self.stored(key))
        except Exception as error:  # safetensors raises its own error types for damaged data
            raise HypernetFileError(self.path, f"cannot read this tensor ({error})", key=key) from None

    def close(self) -> None:
        self._handle = None


class PickleFile(TensorFile):
    def __init__(self, path: Path):
        loaded = load_torch_file(path)
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise HypernetFileError(path, f"holds a {type(loaded).__name__}, expected a dict of tensors")
        self._tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        others = [str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
        super().__init__(path, list(self._tensors), {})
        self.other_keys = others
        self._index()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[self.stored(key)].shape)

    def tensor(self, key: str) -> torch.Tensor:
        return self._tensors[self.stored(key)]

    def close(self) -> None:
        self._tensors = {}


def open_tensor_file(path: str | Path) -> TensorFile:
    """Opens a checkpoint by its content (users rename files), not by its extension."""
    path = Path(path)
    if not path.exists():
        raise HypernetFileError(path, "no such file: expected a .safetensors/.ckpt checkpoint or a diffusers folder")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError as error:
        raise HypernetFileError(path, f"cannot be read ({error.strerror or error})") from None
    if size == 0:
        raise HypernetFileError(path, "is empty: expected a .safetensors or .ckpt checkpoint")
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return PickleFile(path)
    if len(head) == 9 and head[8:9] == b"{":
        return SafetensorsFile(path)
    raise HypernetFileError(
        path, "is neither a .safetensors file nor a PyTorch (.ckpt/.pt) checkpoint; expected one of those"
    )


# --- what a file holds -------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``describe_checkpoint`` found; ``family`` is None for sizes no shipped config has."""

    path: str
    layout: str  # "sd1" (transformers CLIP text encoder) or "sd2" (OpenCLIP)
    family: str | None
    cross_attention_dim: int
    prediction_type: str | None  # None: not stated by the file or a side-car .yaml
    config_source: str


def _refuse_unknown(source: TensorFile) -> None:
    keys = source.keys
    path = source.path
    expected = (
        "expected a Stable Diffusion 1.x or 2.x checkpoint "
        "(keys model.diffusion_model.*, first_stage_model.*, cond_stage_model.*)"
    )
    others = source.other_keys
    hypernetwork_tensors = any(re.match(r"\d+\.[kv]\.", k) for k in keys) or source.metadata.get("format") == "hypernet"
    if hypernetwork_tensors or any(str(k).isdigit() for k in others) or "layer_structure" in others:
        raise HypernetFileError(
            path, f"looks like a hypernetwork, not a model (load it with hypernet.load); {expected}"
        )
    if "string_to_param" in others or "emb_params" in keys:
        raise HypernetFileError(path, f"is a textual-inversion embedding, not a model; {expected}")
    if not keys:
        raise HypernetFileError(path, f"holds no tensors; {expected}")
    if any(k.startswith("conditioner.embedders.") for k in keys) or UNET_PREFIX + "label_emb.0.0.weight" in source:
        raise HypernetFileError(path, f"is an SDXL checkpoint, which hypernet does not load; {expected}")
    if any("lora_" in k or ".lora_down." in k or ".lora_A." in k for k in keys):
        raise HypernetFileError(path, f"is a LoRA file, not a full model; {expected}")
    if UNET_PREFIX + "input_blocks.0.0.weight" not in source:
        if any(k.startswith("down_blocks.") or k.startswith("conv_in.") for k in keys):
            hint = "diffusers-format weights of one component: pass the whole diffusers pipeline folder instead"
        elif any(k.startswith("encoder.down.") for k in keys):
            hint = "a stand-alone VAE, not a full model"
        elif any(k.startswith(UNET_PREFIX) for k in keys):
            hint = "its UNet has no input_blocks (another architecture: SD3, Flux, ...?)"
        else:
            hint = f"no UNet found (first keys: {', '.join(sorted(keys)[:3])})"
        raise HypernetFileError(path, f"{hint}; {expected}")
    in_channels = source.shape(UNET_PREFIX + "input_blocks.0.0.weight")[1]
    if in_channels != 4:
        raise HypernetFileError(
            path,
            f"its UNet takes {in_channels} input channels (an inpainting or instruct-pix2pix model); only "
            "4-channel text-to-image checkpoints load",
            key=UNET_PREFIX + "input_blocks.0.0.weight",
        )
    if not any(k.startswith(VAE_PREFIX) for k in keys):
        raise HypernetFileError(path, f"has no VAE (first_stage_model.*): a pruned UNet-only file? {expected}")
    if text_layout(keys) is None:
        raise HypernetFileError(path, f"has no text encoder (cond_stage_model.*); {expected}")


def _cross_attention_dim(source: TensorFile) -> int:
    key = CROSS_ATTENTION_PROBE
    if key not in source:
        key = next((k for k in source.keys if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight")), None)
        if key is None:
            raise HypernetFileError(source.path, "its UNet has no cross-attention (attn2) layers; expected SD 1.x/2.x")
    return source.shape(key)[1]


_PARAMETERIZATION = re.compile(r"^\s*parameterization\s*:\s*[\"']?(\w+)[\"']?\s*(#.*)?$", re.MULTILINE)


def _stated_prediction_type(source: TensorFile) -> str | None:
    """What the file or its side-car .yaml says, without running the model."""
    stated = source.metadata.get(METADATA_PREFIX + "prediction_type")
    if stated:
        return check_prediction_type(stated)
    if "v_pred" in source:  # the marker ComfyUI's savers write into v-prediction checkpoints
        return "v_prediction"
    side_car = source.path.with_suffix(".yaml")
    if side_car.is_file():
        try:
            text = side_car.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise HypernetFileError(side_car, f"side-car config cannot be read ({error})") from None
        match = _PARAMETERIZATION.search(text)
        return "v_prediction" if match and match[1] == "v" else "epsilon"
    return None


# --- building modules ------------------------------------------------------------------------


def _build_modules(config: PipelineConfig, empty: bool):
    """UNet, VAE and text encoder from configs; ``empty`` puts parameters on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_config = {k: v for k, v in config.text_encoder.items() if not k.startswith("_")}
    with quiet_transformers():
        clip_config = CLIPTextConfig.from_dict(text_config)
    with quiet_transformers():
        if not empty:
            return {
                "unet": UNet2DConditionModel.from_config(config.unet),
                "vae": AutoencoderKL.from_config(config.vae),
                "text_encoder": CLIPTextModel(clip_config),
            }
        with init_empty_weights(include_buffers=False):
            unet = UNet2DConditionModel.from_config(config.unet)
            vae = AutoencoderKL.from_config(config.vae)
        # transformers skips weight initialisation inside a meta-device context (under
        # init_empty_weights it would run slow reference kernels on every meta tensor).
        with torch.device("meta"):
            text_encoder = CLIPTextModel(clip_config)
    _materialise_buffers(text_encoder)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder}


def _materialise_buffers(text_encoder) -> None:
    """Puts CLIP's non-persistent ``position_ids`` buffer back on the CPU (not in any file)."""
    for name, buffer in list(text_encoder.named_buffers()):
        if buffer.device.type != "meta":
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = text_encoder.get_submodule(owner_name)
        if leaf != "position_ids":
            raise HypernetError(f"CLIPTextModel has an unexpected buffer {name!r}; hypernet cannot rebuild it")
        values = torch.arange(buffer.shape[-1]).expand(buffer.shape)
        owner.register_buffer(leaf, values, persistent=leaf not in owner._non_persistent_buffers_set)


def _scheduler(config: PipelineConfig, prediction_type: str | None):
    import diffusers

    name = config.scheduler.get("_class_name")
    if name not in SCHEDULER_CLASSES:
        raise HypernetError(f"scheduler class {name!r} is not one of {', '.join(SCHEDULER_CLASSES)}")
    settings = dict(config.scheduler)
    if prediction_type is not None:
        settings["prediction_type"] = prediction_type
    return getattr(diffusers, name).from_config(settings)


def _assemble(modules, config: PipelineConfig, prediction_type: str | None, dtype, device, tokenizer_directory=None):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=modules["vae"],
        text_encoder=modules["text_encoder"],
        tokenizer=load_clip_tokenizer(config.pad_with, directory=tokenizer_directory),
        unet=modules["unet"],
        scheduler=_scheduler(config, prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    # Saved folders name the tokenizer class in model_index.json; transformers' CLIPTokenizer
    # keeps them loadable by plain diffusers (it has no hypernet import to find ours).
    pipe.register_to_config(tokenizer=("transformers", "CLIPTokenizer"))
    _cast(pipe, dtype)
    return _move(pipe, device)


def _move(pipe, device):
    # Modules are built on the CPU; diffusers warns about fp16 on "cpu" even for a no-op move.
    return pipe if torch.device(device).type == "cpu" else pipe.to(device)


def _cast(pipe, dtype: torch.dtype) -> None:
    """Casts the pipeline's modules where needed.

    ``torch.nn.Module.to`` directly: diffusers 0.42's ``ModelMixin.to`` warns about
    "modules that should be kept in float32" on every dtype cast, even when there are none.
    """
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        if any(parameter.dtype != dtype for parameter in module.parameters()):
            torch.nn.Module.to(module, dtype=dtype)


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


@torch.no_grad()
def guess_prediction_type(unet) -> str:
    """Whether a trained SD UNet predicts noise ("epsilon") or velocity ("v_prediction").

    One forward pass on an 8x8 latent, an idea from the webui: at the last timestep the
    noisy input is practically pure noise, so an epsilon model returns roughly its input
    (mean of output - input near 0) while a v-prediction model returns about minus the
    clean latent, far below it. The threshold (-1) is the webui's, found on real SD 2.x
    weights; on untrained weights the answer means nothing.
    """
    parameter = next(unet.parameters())
    options = {"dtype": parameter.dtype, "device": parameter.device}
    latent = torch.full((1, unet.config.in_channels, 8, 8), 0.5, **options)
    context = torch.zeros((1, 77, unet.config.cross_attention_dim), **options)
    timestep = torch.tensor([999], device=parameter.device)
    output = unet(latent, timestep, encoder_hidden_states=context).sample
    score = (output.float() - latent.float()).mean().item()
    return "v_prediction" if score < V_PREDICTION_THRESHOLD else "epsilon"


def _prediction_type(source: TensorFile, layout: str, family, prediction_type, config_dir) -> str | None:
    """The first of: the caller's argument, the family named, the file, the config folder.

    None means undecided: an SD 2.x file that says nothing, settled by a test forward.
    """
    if prediction_type is not None:
        return prediction_type
    if family is not None:
        return "v_prediction" if family == "sd2-v" else "epsilon"
    stated = _stated_prediction_type(source)
    if stated is not None:
        return stated
    if config_dir is not None:
        return None  # the folder's scheduler config decides
    if layout == "sd1":
        return "epsilon"
    return None


def describe_checkpoint(path: str | Path) -> CheckpointInfo:
    """Reads a single file's keys and shapes (not its weights) and says what it is."""
    source = open_tensor_file(path)
    try:
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
    """A ``diffusers.StableDiffusionPipeline`` from a single-file checkpoint or a diffusers folder.

    ``family`` ("sd15", "sd2", "sd2-v") is detected when not given; ``prediction_type``
    ("epsilon" / "v_prediction") overrides every other source of it; ``config`` names a
    diffusers config folder to build the modules from instead of the shipped ones;
    ``progress`` forces the tqdm bar on or off (default: on for big files on a terminal).
    Never reaches a model hub. Raises ``HypernetFileError`` naming the file for anything
    missing, damaged, unsafe or not an SD 1.x/2.x model.
    """
    if family is not None:
        check_family(family)
    check_prediction_type(prediction_type)
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise HypernetError(f"dtype {dtype} is not one of torch.float32, torch.float16, torch.bfloat16")
    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        return _load_folder(path, prediction_type, dtype, device)
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
