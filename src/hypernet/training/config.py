"""What a training run is asked to do: every option of the webui's Train tab, plus the
ones this trainer adds (seed, precision, checkpointing, resize mode, flip). One plain
object, passed in; `validate()` checks everything that can be checked without files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HypernetConfigError
from .calibrating import CalibrationOptions

DEFAULT_TEMPLATE = "style_filewords.txt"  # the webui's default

LATENT_SAMPLING = ("once", "deterministic", "random")
CLIP_MODES = ("disabled", "value", "norm")
RESIZE_MODES = ("stretch", "keep", "bucket")
PRECISIONS = ("auto", "no", "fp16", "bf16")
CHECKPOINTING = ("auto", "on", "off")


@dataclass
class PreviewOptions:
    """The preview picture every `preview_every` steps (webui's preview_* fields).

    `prompt=None` uses the first prompt of the current batch, as the webui does when
    "read parameters from txt2img" is off. `seed=None` uses the run's seed, so the
    pictures of one run differ only by training progress."""

    prompt: str | None = None
    negative_prompt: str = ""
    steps: int = 20
    sampler: str = "Euler a"
    cfg_scale: float = 7.0
    seed: int | None = None
    width: int | None = None  # None: the training width
    height: int | None = None


@dataclass
class TrainingConfig:
    data: Path | str  # folder of images (+ .txt captions), not searched recursively
    # hypernet's defaults, measured against the webui's (training.defaults, docs/training.md "Defaults")
    learning_rate: str = "3e-3:300, 1e-3:700, 3e-4:1000"  # schedule string, §7.2 (webui: 0.00001)
    batch_size: int = 4  # webui: 1
    gradient_accumulation: int = 1
    max_steps: int = 1000  # webui: 100000
    width: int | None = None  # None: the model's native size
    height: int | None = None
    resize: str = "stretch"  # stretch to width x height (webui) | keep (webui "do not resize") | bucket
    flip: bool = False  # random horizontal flip (the webui never flips)
    template: str = "hypernetwork.txt"  # file name in template_dirs or the shipped set, or a path (webui: style_filewords.txt)
    template_dirs: tuple = ()
    filename_word_regex: str = ""
    filename_join: str = " "
    shuffle_tags: bool = False
    tag_dropout: float = 0.0
    caption_dropout: float = 0.4  # share of examples trained on the empty (unconditional) prompt (webui: none)
    latent_sampling: str = "once"
    clip_grad: str = "disabled"
    clip_value: str = "0.1"  # schedule string, same grammar as the learning rate
    use_alpha_weight: bool = False  # PNG alpha channel as loss weight
    save_every: int = 250  # 0: only the final save (webui: 500)
    preview_every: int = 250  # 0: no previews (webui: 500)
    preview: PreviewOptions = field(default_factory=PreviewOptions)
    log_dir: Path | str = "training"
    run_dir: Path | str | None = None  # None: <log_dir>/<YYYY-MM-DD>/<name>
    csv_every: int = 1
    seed: int | None = None  # None: a fresh seed (or the resumed run's)
    precision: str = "auto"  # auto follows the UNet's dtype
    gradient_checkpointing: str = "auto"  # auto: only after running out of CUDA memory
    save_optimizer_state: bool = True
    tensorboard: bool = False
    nonfinite_patience: int = 5  # consecutive non-finite losses before training stops
    auto_recover: bool = True  # a diverging run goes back to its last good weights, learning rate halved
    calibrate: bool = True  # fit the multiplier's calibration curve after the run (training.calibrating)
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    text_cache_size: int = 4096  # encodings kept when prompts vary (shuffle/dropout)
    clip_skip: int = 1  # the webui's CLIP_stop_at_last_layers, as `Generator(clip_skip=)` takes it
    embeddings_dir: Path | str | None = None  # textual-inversion embeddings named in captions

    def replace(self, **changes) -> "TrainingConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "TrainingConfig":
        """Raise one error listing every option that is out of range."""
        problems = []

        def whole(name: str, minimum: int):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                problems.append(f"{name} must be a whole number of at least {minimum} (got {value!r})")

        whole("batch_size", 1)
        whole("gradient_accumulation", 1)
        whole("max_steps", 1)
        whole("save_every", 0)
        whole("preview_every", 0)
        whole("csv_every", 0)
        whole("nonfinite_patience", 1)
        whole("text_cache_size", 0)
        whole("clip_skip", 1)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 8):
                problems.append(f"{name} must be a whole number of pixels of at least 8 (got {value!r})")
        choices = {
            "latent_sampling": LATENT_SAMPLING,
            "clip_grad": CLIP_MODES,
            "resize": RESIZE_MODES,
            "precision": PRECISIONS,
            "gradient_checkpointing": CHECKPOINTING,
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                problems.append(f"{name} {getattr(self, name)!r} is not one of {', '.join(valid)}")
        if not 0 <= self.tag_dropout < 1:
            problems.append(f"tag_dropout must be in [0, 1) (got {self.tag_dropout!r})")
        if not 0 <= self.caption_dropout < 1:
            problems.append(f"caption_dropout must be in [0, 1) (got {self.caption_dropout!r})")
        if not isinstance(self.auto_recover, bool):
            problems.append(f"auto_recover must be True or False (got {self.auto_recover!r})")
        if self.seed is not None and not isinstance(self.seed, int):
            problems.append(f"seed must be a whole number (got {self.seed!r})")
        preview = self.preview
        if preview.steps < 1:
            problems.append(f"preview steps must be at least 1 (got {preview.steps})")
        if not isinstance(self.calibrate, bool):
            problems.append(f"calibrate must be True or False (got {self.calibrate!r})")
        calibration = self.calibration
        if calibration.prompts < 1 or calibration.seeds < 1 or calibration.steps < 1 or not calibration.budget_seconds > 0:
            problems.append("calibration prompts, seeds, steps and budget must be positive")
        if problems:
            raise HypernetConfigError("; ".join(problems))
        return self

    @property
    def prompts_vary(self) -> bool:
        """True when an example's prompt changes from one epoch to the next."""
        return self.shuffle_tags or self.tag_dropout > 0

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        data["template_dirs"] = [str(folder) for folder in self.template_dirs]
        return data
