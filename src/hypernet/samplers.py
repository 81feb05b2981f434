"""Webui sampler names -> diffusers schedulers, as one table of small factories.

A name is `BASE` or `BASE SCHEDULE` (the webui's pre-1.9 combined names such as
"DPM++ 2M Karras"); `schedule` may also be given on its own, like the webui's separate
"Schedule type". Unknown names raise an error listing the valid ones.
"""

from __future__ import annotations

from typing import Any

from .errors import HypernetError

# base name -> (diffusers scheduler class name, extra config)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {"solver_order": 2}),
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

# schedule type -> extra config; only for schedulers that accept it
SCHEDULES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
}

DEFAULT_SAMPLER = "Euler a"


def split_name(name: str, schedule: str | None = None) -> tuple[str, str]:
    """('DPM++ 2M', 'Karras') from 'DPM++ 2M Karras'; validates both parts. The pair is
    also how the webui v1.10 writes Sampler and Schedule type in infotext."""
    text = " ".join(name.split())
    base, found = text, "Automatic"
    for candidate in SCHEDULES:  # names match without regard to case, as the webui looks them up
        if candidate != "Automatic" and text.lower().endswith(" " + candidate.lower()):
            base, found = text[: -len(candidate) - 1], candidate
    matches = [key for key in SAMPLERS if key.lower() == base.lower()]
    if not matches:
        valid = ", ".join(list(SAMPLERS) + [f"{b} Karras" for b in SAMPLERS if _supports(b, "Karras")][:4]) + ", ..."
        raise HypernetError(f"unknown sampler {name!r}; valid names: {valid}")
    if schedule is not None:
        known = [candidate for candidate in SCHEDULES if candidate.lower() == schedule.lower()]
        if not known:
            raise HypernetError(f"unknown schedule type {schedule!r}; valid: {', '.join(SCHEDULES)}")
        schedule = known[0]
    chosen = schedule if schedule not in (None, "Automatic") else found
    return matches[0], chosen


def _scheduler_class(base: str):
    import diffusers

    return getattr(diffusers, SAMPLERS[base][0])


def _supports(base: str, schedule: str) -> bool:
    import inspect

    if schedule == "Automatic":
        return True
    parameters = inspect.signature(_scheduler_class(base).__init__).parameters
    return all(key in parameters for key in SCHEDULES[schedule])


def make_scheduler(name: str, base_config: dict, schedule: str | None = None):
    """A fresh scheduler for sampler `name`, keeping the model's noise schedule
    (betas, prediction type) from `base_config`."""
    base, schedule = split_name(name, schedule)
    if not _supports(base, schedule):
        raise HypernetError(f"sampler {base!r} does not support the {schedule} schedule")
    cls = _scheduler_class(base)
    return cls.from_config(dict(base_config), **SAMPLERS[base][1], **SCHEDULES[schedule])
