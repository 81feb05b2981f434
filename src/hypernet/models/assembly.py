"""Building the diffusers modules from a config (empty on the meta device, or with random
weights) and assembling them into a pipeline with hypernet's tokenizer."""

from __future__ import annotations

import torch

from ..errors import HypernetError
from ..quiet import quiet_transformers
from .configs import SCHEDULER_CLASSES, PipelineConfig
from .tokenizer import load_clip_tokenizer


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
