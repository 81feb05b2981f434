"""Stable Diffusion checkpoints and the CLIP tokenizer, fully offline.

Names resolve on first use, so ``import hypernet.models`` does not import diffusers.
"""

from __future__ import annotations

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


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hypernet.models' has no attribute {name!r}")
