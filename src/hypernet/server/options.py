"""The settings the webui's `/sdapi/v1/options` exposes that mean something here, with
their webui names, defaults and checks. One `Options` object per server; no globals.

Options not listed are still answered by GET (clients read a few common ones) from
`PASSIVE`, and ignored (reported back) by POST: setting them would change nothing.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Callable

from ..errors import HypernetError


class OptionError(HypernetError):
    """An option value of the wrong type or out of range; names the option."""


def _number(low: float, high: float) -> Callable[[str, Any], float]:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise OptionError(f"option {name} must be a number, got {value!r}")
        if not low <= value <= high:
            raise OptionError(f"option {name} must be between {low:g} and {high:g}, got {value!r}")
        return float(value)

    return check


def _whole(low: int, high: int) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise OptionError(f"option {name} must be a whole number from {low} to {high}, got {value!r}")
        return value

    return check


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionError(f"option {name} must be a string, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"option {name} must be true or false, got {value!r}")
    return value


# name -> (default, check). `sd_model_checkpoint` and `sd_hypernetwork` are checked
# against the folders by the service, which owns them.
ACTIVE: dict[str, tuple[Any, Callable[[str, Any], Any]]] = {
    "sd_model_checkpoint": ("", _text),
    "sd_hypernetwork": ("None", _text),
    "extra_networks_default_multiplier": (1.0, _number(-10.0, 10.0)),
    "extra_networks_add_text_separator": (" ", _text),
    "CLIP_stop_at_last_layers": (1, _whole(1, 12)),
    "samples_save": (True, _flag),
    "samples_format": ("png", _text),
    "outdir_txt2img_samples": ("outputs/txt2img-images", _text),
    "outdir_txt2img_grids": ("outputs/txt2img-grids", _text),
    "outdir_img2img_samples": ("outputs/img2img-images", _text),
    "live_previews_enable": (True, _flag),
    "show_progress_every_n_steps": (1, _whole(-1, 1000)),
}

# Read by common clients; answered with the webui's defaults, never used here.
PASSIVE: dict[str, Any] = {
    "sd_vae": "Automatic",
    "sd_checkpoint_hash": "",
    "eta_noise_seed_delta": 0,
    "enable_pnginfo": True,
    "return_grid": True,
    "samples_filename_pattern": "",
    "save_images_add_number": True,
    "img2img_fix_steps": False,
}


class Options:
    """Thread-safe option values; `set` checks each value and says what it ignored."""

    def __init__(self, **initial):
        self._values = {name: default for name, (default, _) in ACTIVE.items()}
        self._lock = threading.Lock()
        for name, value in initial.items():
            self._values[name] = ACTIVE[name][1](name, value) if name in ACTIVE else value

    def get(self, name: str) -> Any:
        with self._lock:
            return self._values.get(name, PASSIVE.get(name))

    def all(self) -> dict:
        with self._lock:
            return {**PASSIVE, **self._values}

    def checked(self, changes: dict) -> tuple[dict, list[str]]:
        """(valid changes, names ignored). Raises OptionError naming every bad value."""
        accepted, ignored, problems = {}, [], []
        for name, value in changes.items():
            if name not in ACTIVE:
                ignored.append(name)
                continue
            try:
                accepted[name] = ACTIVE[name][1](name, value)
            except OptionError as error:
                problems.append(str(error))
        if problems:
            raise OptionError("; ".join(problems))
        return accepted, ignored

    def update(self, values: dict) -> None:
        with self._lock:
            self._values.update(values)
