"""Training hypernetworks (contract §7): every option of the webui's Train tab, on a frozen
diffusers pipeline, with exact resume and atomic checkpoints.

    from hypernet.training import TrainingConfig, train
    result = train(pipe, network, TrainingConfig(data="images", learning_rate="5e-5:100, 5e-6"))

Importing this package is cheap; torch-heavy modules load on first use.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

_LAZY = {
    "TrainingConfig": ("hypernet.training.config", "TrainingConfig"),
    "PreviewOptions": ("hypernet.training.config", "PreviewOptions"),
    "train": ("hypernet.training.trainer", "train"),
    "prepare": ("hypernet.training.plan", "prepare"),
    "check_inputs": ("hypernet.training.plan", "check_inputs"),
    "TrainingError": ("hypernet.training.plan", "TrainingError"),
    "TrainingResult": ("hypernet.training.results", "TrainingResult"),
    "StepInfo": ("hypernet.training.results", "StepInfo"),
    "StopReason": ("hypernet.training.results", "StopReason"),
    "describe_result": ("hypernet.training.results", "describe_result"),
    "Schedule": ("hypernet.training.schedule", "Schedule"),
    "ScheduleError": ("hypernet.training.schedule", "ScheduleError"),
    "parse_schedule": ("hypernet.training.schedule", "parse_schedule"),
    "read_resume_point": ("hypernet.training.checkpoints", "read_resume_point"),
    "save_checkpoint": ("hypernet.training.checkpoints", "save_checkpoint"),
}

__all__ = list(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
