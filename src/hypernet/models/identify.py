"""What a checkpoint file is: refusing what is not an SD 1.x/2.x model (hypernetworks,
embeddings, LoRAs, SDXL, inpainting, ...), its cross-attention width, and whether it
predicts noise or velocity (stated by the file, or found by one forward pass)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import HypernetFileError
from .configs import METADATA_PREFIX, check_prediction_type
from .layout import CROSS_ATTENTION_PROBE, UNET_PREFIX, VAE_PREFIX, text_layout
from .tensor_file import TensorFile

V_PREDICTION_THRESHOLD = -1.0


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
        raise HypernetFileError(path, "is an SDXL checkpoint; hypernet loads SDXL from .safetensors files only")
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
