"""Small pipelines with the Stable Diffusion structure, built in code."""

from __future__ import annotations

import torch

from hypernet.models.assembly import _assemble, _build_modules
from hypernet.models.configs import PipelineConfig, family_config

TEXT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}


def tiny_config(layout: str = "sd1") -> PipelineConfig:
    """Two levels, block_out_channels (32, 64), cross-attention width 32."""
    family = family_config("sd15" if layout == "sd1" else "sd2")
    unet = dict(
        family.unet,
        block_out_channels=[32, 64],
        layers_per_block=2,
        sample_size=8,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=32,
        attention_head_dim=2 if layout == "sd1" else [1, 2],
    )
    vae = dict(
        family.vae,
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        layers_per_block=1,
        sample_size=16,
        norm_num_groups=8,
    )
    text = dict(family.text_encoder, **TEXT, hidden_act="quick_gelu" if layout == "sd1" else "gelu")
    return PipelineConfig(
        unet=unet, vae=vae, text_encoder=text, scheduler=dict(family.scheduler), pad_with=family.pad_with
    )


def sd_shaped_config(layout: str = "sd1") -> PipelineConfig:
    """The full SD block structure (4 levels, 2 layers each, the SD block types), narrow widths."""
    family = family_config("sd15" if layout == "sd1" else "sd2")
    unet = dict(
        family.unet,
        block_out_channels=[32, 32, 64, 64],
        cross_attention_dim=32,
        attention_head_dim=2 if layout == "sd1" else [1, 1, 2, 2],
        sample_size=16,
    )
    vae = dict(family.vae, block_out_channels=[32, 32, 64, 64], sample_size=64)
    text = dict(family.text_encoder, **dict(TEXT, num_hidden_layers=3))
    return PipelineConfig(
        unet=unet, vae=vae, text_encoder=text, scheduler=dict(family.scheduler), pad_with=family.pad_with
    )


def build_pipeline(config: PipelineConfig, seed: int = 0, prediction_type=None):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        modules = _build_modules(config, empty=False)
    return _assemble(modules, config, prediction_type, torch.float32, "cpu")


def states(pipe) -> dict[str, dict[str, torch.Tensor]]:
    return {name: getattr(pipe, name).state_dict() for name in ("unet", "vae", "text_encoder")}


def write_config_folder(config: PipelineConfig, folder) -> None:
    """The configs as a diffusers pipeline folder without weights."""
    import json
    from pathlib import Path

    folder = Path(folder)
    files = {
        "unet/config.json": config.unet,
        "vae/config.json": config.vae,
        "text_encoder/config.json": config.text_encoder,
        "scheduler/scheduler_config.json": config.scheduler,
        "tokenizer/tokenizer_config.json": {"pad_token": "!" if config.pad_with == "!" else "<|endoftext|>"},
        "model_index.json": {"_class_name": "StableDiffusionPipeline"},
    }
    for relative, content in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(json.dumps(content))
