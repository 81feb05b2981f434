"""The two sets of defaults a training run can start from.

hypernet's own (the `TrainingConfig` field defaults and `network_options()`) were chosen
by measurement on the embedded model, `benchmarks/training_quality.py` (docs/training.md,
*Defaults*); the webui's (`webui_config`, `webui_network_options`, `--webui-defaults`)
are its Train and Create tabs as they open.
"""

from __future__ import annotations

from .config import DEFAULT_TEMPLATE, TrainingConfig

WEBUI_TEMPLATE = "hypernetwork.txt"
WEBUI_TRAINING = {
    "learning_rate": "0.00001",
    "batch_size": 1,
    "gradient_accumulation": 1,
    "max_steps": 100000,
    "template": DEFAULT_TEMPLATE,
    "caption_dropout": 0.0,
    "clip_grad": "disabled",
    "clip_value": "0.1",
    "save_every": 500,
    "preview_every": 500,
    "auto_recover": False,
    "calibrate": False,
}


def network_options() -> dict:
    """How `hypernet train` makes a network that does not exist yet (hypernet's defaults)."""
    return {"layer_structure": (1, 2, 1), "activation": "linear", "weight_init": "ZeroLast"}


def webui_network_options() -> dict:
    """The webui's Create tab as it opens: 1-2-1, linear, Normal init."""
    return {"layer_structure": (1, 2, 1), "activation": "linear", "weight_init": "Normal"}


def webui_config(data, **changes) -> TrainingConfig:
    """A `TrainingConfig` with the webui's Train-tab defaults (plus `changes`)."""
    fields = {key: value for key, value in WEBUI_TRAINING.items() if key in TrainingConfig.__dataclass_fields__}
    return TrainingConfig(data=data, **{**fields, **changes})
