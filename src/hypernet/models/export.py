"""Writing a diffusers SD pipeline as one webui / CompVis ``.safetensors`` file.

The inverse of ``checkpoint.load_pipeline``'s conversion, with the same key tables. Besides
the tensors, the file's metadata carries the diffusers configs of the pipeline (keys
``hypernet.*``), so hypernet loads it back exactly, whatever its sizes; other programs
ignore the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import HypernetConfigError, HypernetFileError
from ..fileio import atomic_path
from .key_matching import key_tables
from .configs import METADATA_PREFIX, PipelineConfig, config_to_metadata
from .layout import LAYOUTS, SD1_TEXT_PREFIX, open_clip_extras

EXPORT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _plain(config) -> dict:
    """A diffusers/transformers config as a JSON-safe dict."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    return json.loads(json.dumps(dict(config), default=list))


def pipeline_config(pipe) -> PipelineConfig:
    """The configs of a loaded pipeline's components, as the loader reads them back."""
    text = _plain(pipe.text_encoder.config)
    for bookkeeping in ("transformers_version", "_name_or_path", "torch_dtype", "dtype", "_commit_hash"):
        text.pop(bookkeeping, None)
    scheduler = _plain(pipe.scheduler.config)
    scheduler["_class_name"] = type(pipe.scheduler).__name__
    unet = _plain(pipe.unet.config)
    unet["_class_name"] = "UNet2DConditionModel"
    vae = _plain(pipe.vae.config)
    vae["_class_name"] = "AutoencoderKL"
    pad_with = "!" if pipe.tokenizer.pad_token_id == 0 else "eos"
    return PipelineConfig(unet=unet, vae=vae, text_encoder=text, scheduler=scheduler, pad_with=pad_with)


def export_single_file(
    pipe,
    path: str | Path,
    dtype: torch.dtype = torch.float16,
    layout: str | None = None,
) -> Path:
    """Writes ``pipe``'s UNet, VAE and text encoder as one original-layout ``.safetensors``.

    ``layout`` "sd1" stores the text encoder as transformers' CLIP
    (``cond_stage_model.transformer.text_model.*``), "sd2" as OpenCLIP
    (``cond_stage_model.model.*``); by default "sd2" when the tokenizer pads with id 0
    (SD 2.x) and "sd1" otherwise. The write is atomic: a temporary file in the same folder,
    renamed over ``path`` only when complete. Returns ``path``.
    """
    from safetensors.torch import save_file

    if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL: its own layout (conditioner.embedders.*)
        from .sdxl import export_sdxl_single_file

        if layout is not None:
            raise HypernetConfigError(f"layout {layout!r} is for SD 1.x/2.x; an SDXL pipeline has one layout")
        if dtype not in EXPORT_DTYPES:
            raise HypernetConfigError(f"export dtype {dtype} is not one of {', '.join(map(str, EXPORT_DTYPES))}")
        return export_sdxl_single_file(pipe, path, dtype)
    path = Path(path)
    if path.suffix != ".safetensors":
        raise HypernetFileError(path, "export writes .safetensors only; name the file *.safetensors")
    if dtype not in EXPORT_DTYPES:
        raise HypernetConfigError(f"export dtype {dtype} is not one of {', '.join(map(str, EXPORT_DTYPES))}")
    config = pipeline_config(pipe)
    if layout is None:
        layout = "sd2" if config.pad_with == "!" else "sd1"
    if layout not in LAYOUTS:
        raise HypernetConfigError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    modules = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    states = {name: module.state_dict() for name, module in modules.items()}
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for pair in key_tables(modules, config, layout):
            parts = [states[pair.component][key].detach().to("cpu", dtype) for key in pair.diffusers]
            tensors[pair.original] = pair.to_original(parts).contiguous()
        if layout == "sd1":
            positions = int(config.text_encoder["max_position_embeddings"])
            tensors[SD1_TEXT_PREFIX + "embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
        else:
            tensors.update(open_clip_extras(config.text_encoder, dtype))
    metadata = {"format": "pt", **config_to_metadata(config)}
    metadata[METADATA_PREFIX + "prediction_type"] = config.scheduler.get("prediction_type", "epsilon")

    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    return path
