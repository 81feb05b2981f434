"""Stable Diffusion checkpoints and the CLIP tokenizer, fully offline.

Names resolve on first use, so ``import hypernet.models`` does not import diffusers.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

_LAZY = {
    "ClipTokenizer": ("hypernet.models.tokenizer", "ClipTokenizer"),
    "load_clip_tokenizer": ("hypernet.models.tokenizer", "load_clip_tokenizer"),
    "clean_text": ("hypernet.models.tokenizer", "clean_text"),
    "FAMILIES": ("hypernet.models.configs", "FAMILIES"),
    "family_directory": ("hypernet.models.configs", "family_directory"),
    "CheckpointInfo": ("hypernet.models.checkpoint", "CheckpointInfo"),
    "describe_checkpoint": ("hypernet.models.checkpoint", "describe_checkpoint"),
    "guess_prediction_type": ("hypernet.models.checkpoint", "guess_prediction_type"),
    "load_pipeline": ("hypernet.models.checkpoint", "load_pipeline"),
    "pipeline_from_config": ("hypernet.models.checkpoint", "pipeline_from_config"),
    "export_single_file": ("hypernet.models.export", "export_single_file"),
}

__all__ = list(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
