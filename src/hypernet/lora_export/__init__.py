"""Hypernetworks as LoRA files, for every tool that reads LoRAs (diffusers, ComfyUI,
Forge, InvokeAI, the webui).

A hypernetwork rewrites the input of `to_k`/`to_v`; the LoRA instead changes their
weights by the delta that has the same effect on one base model: exactly for affine
networks (the `linear` activation without LayerNorm), by a least-squares fit over real
activations otherwise. `export_lora(pipe, network, "out.safetensors")` writes it;
`describe_lora(path)` reads a LoRA file's header back.
"""

from .export import ExportReport, LayerReport, export_lora
from .files import LAYOUTS, describe_lora

__all__ = ["LAYOUTS", "ExportReport", "LayerReport", "describe_lora", "export_lora"]
