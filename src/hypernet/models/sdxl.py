"""SDXL checkpoints, offline: single files in the webui / ComfyUI layout and diffusers folders.

Loading is diffusers' own: `StableDiffusionXLPipeline.from_single_file(path,
config=<shipped config folder>, local_files_only=True)` converts the original layout
(`model.diffusion_model.*`, `first_stage_model.*`, `conditioner.embedders.0.transformer.*`
for CLIP-L, `conditioner.embedders.1.model.*` for OpenCLIP bigG) with its converters, and
`from_pretrained(folder, local_files_only=True)` reads a folder. hypernet adds the shipped
configs (`data/configs/sdxl`, `sdxl-v`), its own tokenizers (the same BPE files; the second
one pads with "!" as SDXL's does), the family and prediction-type decision, and clear
errors. Writing the original layout (`export_sdxl_single_file`) is hypernet's own: diffusers
has no such function in its library; it reuses the SD 1.x/2.x key tables (`layout.py`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import HypernetConfigError, HypernetFileError
from ..fileio import atomic_path
from ..quiet import quiet_transformers
from .configs import CONFIG_ROOT, METADATA_PREFIX, PREDICTION_TYPES
from .layout import SD1_TEXT_PREFIX, SD2_TEXT_PREFIX, KeyPair, UNET_PREFIX, VAE_PREFIX, text_pairs, unet_pairs, vae_pairs
from .tensor_file import open_tensor_file
from .tokenizer import load_clip_tokenizer

SDXL_FAMILIES = ("sdxl", "sdxl-v")
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
BIG_G_PREFIX = "conditioner.embedders.1.model."
# SDXL's UNet keys that SD 1.x/2.x UNets lack: the vector (pooled text + sizes) embedding.
_ADDED_EMBEDDING = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
_PROBE = UNET_PREFIX + "label_emb.0.0.weight"


def sdxl_config_directory(family: str) -> Path:
    if family not in SDXL_FAMILIES:
        raise HypernetConfigError(f"unknown SDXL family {family!r}; expected one of {', '.join(SDXL_FAMILIES)}")
    return CONFIG_ROOT / family


def is_sdxl_keys(keys) -> bool:
    """The single-file layout of SDXL (base and its fine-tunes, or the refiner)."""
    return any(key.startswith("conditioner.embedders.") or key == _PROBE for key in keys)


def is_sdxl_folder(path: Path) -> bool:
    index = path / "model_index.json"
    if not index.is_file():
        return False
    try:
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError):
        return False
    return isinstance(name, str) and name.startswith("StableDiffusionXL")


def _check_single_file(source) -> None:
    keys = source.keys
    path = source.path
    if not any(key.startswith(CLIP_L_PREFIX) for key in keys):
        if any(key.startswith("conditioner.embedders.0.model.") for key in keys):
            raise HypernetFileError(path, "is an SDXL refiner (one OpenCLIP text encoder); only SDXL base models "
                                          "and their fine-tunes load")
        raise HypernetFileError(path, f"is an SDXL checkpoint without its CLIP-L text encoder ({CLIP_L_PREFIX}*)")
    if not any(key.startswith(BIG_G_PREFIX) for key in keys):
        raise HypernetFileError(path, f"is an SDXL checkpoint without its OpenCLIP bigG text encoder ({BIG_G_PREFIX}*)")
    if not any(key.startswith(VAE_PREFIX) for key in keys):
        raise HypernetFileError(path, f"is an SDXL checkpoint without a VAE ({VAE_PREFIX}*): a UNet-only file?")
    probe = UNET_PREFIX + "input_blocks.0.0.weight"
    if probe not in source:
        raise HypernetFileError(path, f"is an SDXL checkpoint without its UNet ({probe} missing)")
    channels = source.shape(probe)[1]
    if channels != 4:
        raise HypernetFileError(path, f"its UNet takes {channels} input channels (an inpainting model); only "
                                      "4-channel text-to-image SDXL checkpoints load", key=probe)


def stated_prediction_type(source) -> str | None:
    """What the file says: hypernet's export metadata, or the `v_pred` marker key that
    ComfyUI and v-prediction fine-tunes (NoobAI-XL v-pred, ...) carry."""
    stated = source.metadata.get(METADATA_PREFIX + "prediction_type")
    if stated in PREDICTION_TYPES:
        return stated
    if "v_pred" in source:
        return "v_prediction"
    return None


def describe_sdxl(source) -> dict:
    """Family, prediction type and zero-terminal-SNR of an SDXL single file, from keys only."""
    _check_single_file(source)
    stated = stated_prediction_type(source)
    probe = next((key for key in source.keys if key.startswith(UNET_PREFIX) and key.endswith("attn2.to_k.weight")), None)
    return {
        "family": "sdxl-v" if stated == "v_prediction" else "sdxl",
        "prediction_type": stated,
        "zero_terminal_snr": "ztsnr" in source,
        "cross_attention_dim": source.shape(probe)[1] if probe else None,
    }


def _tokenizers(config_dir: Path):
    directory = config_dir / "tokenizer"
    vocabulary = directory if (directory / "vocab.json").is_file() else None
    directory_2 = config_dir / "tokenizer_2"
    vocabulary_2 = directory_2 if (directory_2 / "vocab.json").is_file() else None
    return load_clip_tokenizer("eos", directory=vocabulary), load_clip_tokenizer("!", directory=vocabulary_2)


def _scheduler(config_dir: Path, prediction_type: str | None, zero_terminal_snr: bool):
    import diffusers

    path = config_dir / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        raise HypernetFileError(path, "missing: an SDXL config folder needs a scheduler config")
    settings = json.loads(path.read_text(encoding="utf-8"))
    name = settings.get("_class_name")
    if not isinstance(name, str) or not hasattr(diffusers, name):
        raise HypernetFileError(path, f"names scheduler class {name!r}, which diffusers does not have")
    if prediction_type is not None:
        settings["prediction_type"] = prediction_type
    if zero_terminal_snr:
        settings["rescale_betas_zero_snr"] = True
    return getattr(diffusers, name).from_config(settings)


def load_sdxl_single_file(path: Path, family: str | None, prediction_type: str | None, dtype, device,
                          config_dir=None):
    """A `StableDiffusionXLPipeline` from an original-layout single file (safetensors only:
    diffusers' loader unpickles .ckpt files, which hypernet does not allow for SDXL)."""
    from diffusers import StableDiffusionXLPipeline

    if path.suffix.lower() != ".safetensors":
        raise HypernetFileError(path, "SDXL checkpoints load from .safetensors only (a pickled .ckpt could run "
                                      "code); convert it with a trusted tool first")
    source = open_tensor_file(path)
    try:
        facts = describe_sdxl(source)
    finally:
        source.close()
    if family is not None and family not in SDXL_FAMILIES:
        raise HypernetFileError(path, f"is an SDXL checkpoint, not family {family!r} (use sdxl or sdxl-v)")
    decided = prediction_type or ("v_prediction" if family == "sdxl-v" else None) or facts["prediction_type"]
    if config_dir is None:
        config_dir = sdxl_config_directory("sdxl-v" if decided == "v_prediction" else "sdxl")
    config_dir = Path(config_dir)
    if not (config_dir / "model_index.json").is_file():
        raise HypernetFileError(config_dir, "is not an SDXL config folder (no model_index.json)")
    tokenizer, tokenizer_2 = _tokenizers(config_dir)
    try:
        with quiet_transformers():
            pipe = StableDiffusionXLPipeline.from_single_file(
                str(path), config=str(config_dir), local_files_only=True, torch_dtype=dtype,
                tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                scheduler=_scheduler(config_dir, decided, facts["zero_terminal_snr"]), add_watermarker=False)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise HypernetFileError(path, f"cannot be loaded as an SDXL checkpoint with the config in {config_dir} "
                                      f"({type(error).__name__}: {error})") from None
    return _finish(pipe, device)


def load_sdxl_folder(path: Path, prediction_type: str | None, dtype, device):
    """A diffusers SDXL pipeline folder, component by component (as `_load_folder` does for
    SD 1.x/2.x: diffusers' pipeline loader would also load the folder's tokenizer classes),
    with hypernet's tokenizers."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from .checkpoint import _weights_variant

    modules = {}
    for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel),
                      ("text_encoder_2", CLIPTextModelWithProjection)):
        folder = path / name
        try:
            with quiet_transformers():
                modules[name] = cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype,
                                                    variant=_weights_variant(folder) if folder.is_dir() else None)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
            raise HypernetFileError(folder, f"cannot be loaded as the SDXL pipeline's {name} ({error})") from None
    tokenizer, tokenizer_2 = _tokenizers(path)
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    pipe = StableDiffusionXLPipeline(**modules, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
                                     scheduler=_scheduler(path, prediction_type, False),
                                     force_zeros_for_empty_prompt=index.get("force_zeros_for_empty_prompt", True),
                                     add_watermarker=False)
    return _finish(pipe, device)


def _finish(pipe, device):
    pipe.set_progress_bar_config(disable=True)
    pipe.register_to_config(tokenizer=("transformers", "CLIPTokenizer"), tokenizer_2=("transformers", "CLIPTokenizer"))
    return pipe if torch.device(device).type == "cpu" else pipe.to(device)


# --- export ----------------------------------------------------------------------------------


def sdxl_key_tables(pipe) -> list[KeyPair]:
    """Every tensor of the original layout and the diffusers tensor(s) it holds."""
    unet_keys = list(pipe.unet.state_dict())
    added = [key for key in unet_keys if key.rpartition(".")[0] in _ADDED_EMBEDDING]
    pairs = unet_pairs([key for key in unet_keys if key not in added], pipe.unet.config)
    for key in added:
        module, _, parameter = key.rpartition(".")
        pairs.append(KeyPair(f"{UNET_PREFIX}{_ADDED_EMBEDDING[module]}.{parameter}", "unet", (key,)))
    pairs += vae_pairs(list(pipe.vae.state_dict()), pipe.vae.config)
    for pair in text_pairs(list(pipe.text_encoder.state_dict()), "sd1"):
        pairs.append(KeyPair(CLIP_L_PREFIX + "text_model." + pair.original.removeprefix(SD1_TEXT_PREFIX), "text_encoder",
                             pair.diffusers, pair.transform))
    keys_2 = list(pipe.text_encoder_2.state_dict())
    projection = [key for key in keys_2 if key.startswith("text_projection.")]
    for pair in text_pairs([key for key in keys_2 if key not in projection], "sd2"):
        pairs.append(KeyPair(BIG_G_PREFIX + pair.original.removeprefix(SD2_TEXT_PREFIX), "text_encoder_2",
                             pair.diffusers, pair.transform))
    for key in projection:
        pairs.append(KeyPair(BIG_G_PREFIX + "text_projection", "text_encoder_2", (key,), "transpose"))
    return pairs


def export_sdxl_single_file(pipe, path, dtype: torch.dtype = torch.float16) -> Path:
    """Writes an SDXL pipeline as one original-layout `.safetensors` (what the webui and
    ComfyUI load); atomic, like `export_single_file`."""
    from safetensors.torch import save_file

    path = Path(os.fspath(path))
    if path.suffix != ".safetensors":
        raise HypernetFileError(path, "export writes .safetensors only; name the file *.safetensors")
    states = {name: getattr(pipe, name).state_dict() for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
    tensors = {}
    with torch.no_grad():
        for pair in sdxl_key_tables(pipe):
            parts = [states[pair.component][key].detach().to("cpu", dtype) for key in pair.diffusers]
            tensors[pair.original] = pair.to_original(parts).contiguous()
        positions = int(pipe.text_encoder.config.max_position_embeddings)
        tensors[CLIP_L_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
        tensors[BIG_G_PREFIX + "logit_scale"] = torch.tensor(4.6052, dtype=dtype)  # OpenCLIP's ln(100); unused
    prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
    metadata = {"format": "pt", METADATA_PREFIX + "prediction_type": prediction_type}
    if prediction_type == "v_prediction":
        tensors["v_pred"] = torch.tensor([])  # the marker other tools read
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return path
