"""Request bodies of the webui-compatible API, with the webui v1.10.1 field names and
defaults. Unknown fields are accepted and ignored (clients send dozens); fields the
webui knows but hypernet does not implement are accepted and named in `unsupported`,
so the response can say so instead of failing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")

    @property
    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class GenerationFields(Lenient):
    """The fields txt2img and img2img share."""

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str = "Euler"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int | None = Field(None, description="default: the model's native size (512 for SD 1.x, as the webui)")
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None

    def unsupported(self) -> list[str]:
        """Known webui fields set to something hypernet does not do (yet)."""
        checks = {
            "restore_faces": bool(self.restore_faces),
            "tiling": bool(self.tiling),
            "styles": bool(self.styles),
            "eta": self.eta is not None,
            "s_min_uncond / s_churn / s_tmax / s_tmin / s_noise": any(
                v is not None for v in (self.s_min_uncond, self.s_churn, self.s_tmax, self.s_tmin, self.s_noise)),
            "seed_resize_from_w / seed_resize_from_h": self.seed_resize_from_w > 0 or self.seed_resize_from_h > 0,
            "refiner_checkpoint": bool(self.refiner_checkpoint),
            "disable_extra_networks": self.disable_extra_networks,
            "script_name": bool(self.script_name),
            "alwayson_scripts": bool(self.alwayson_scripts),
        }
        return [name for name, used in checks.items() if used]


class Txt2ImgRequest(GenerationFields):
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_cfg: float | None = Field(None, description="hires pass CFG scale (default: cfg_scale)")

    def unsupported(self) -> list[str]:
        checks = {
            "denoising_strength": self.denoising_strength is not None and not self.enable_hr,
            "hr_checkpoint_name": self.enable_hr and self.hr_checkpoint_name not in (None, "", "Use same checkpoint"),
        }
        return super().unsupported() + [name for name, used in checks.items() if used]


class Img2ImgRequest(GenerationFields):
    init_images: list[str] | None = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    mask_round: bool = True
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = False

    def unsupported(self) -> list[str]:
        checks = {
            "image_cfg_scale": self.image_cfg_scale is not None,
            "initial_noise_multiplier": self.initial_noise_multiplier not in (None, 1, 1.0),
            "latent_mask": bool(self.latent_mask),
        }
        return super().unsupported() + [name for name, used in checks.items() if used]


class CreateHypernetworkRequest(Lenient):
    name: str
    enable_sizes: list[int | str] = Field(default_factory=lambda: ["768", "320", "640", "1280"])
    overwrite_old: bool = False
    layer_structure: str | list[float] | None = "1, 2, 1"
    activation_func: str | None = "linear"
    weight_init: str = "Normal"
    add_layer_norm: bool = False
    use_dropout: bool = False
    dropout_structure: str | list[float] | None = "0, 0, 0"
    # not in the webui's form
    activate_output: bool = False
    optional_info: str | None = None
    format: str = "pt"
    seed: int | None = None


class TrainHypernetworkRequest(Lenient):
    id_task: str | None = None
    hypernetwork_name: str
    learn_rate: str = "0.00001"
    batch_size: int = 1
    gradient_step: int = 1
    data_root: str
    log_directory: str = "textual_inversion"
    training_width: int | None = Field(None, description="default: the model's native size (512 for SD 1.x)")
    training_height: int | None = None
    varsize: bool = False
    steps: int = 100000
    clip_grad_mode: str = "disabled"
    clip_grad_value: str = "0.1"
    shuffle_tags: bool = False
    tag_drop_out: float = 0.0
    latent_sampling_method: str = "once"
    use_weight: bool = False
    create_image_every: int = 500
    save_hypernetwork_every: int = 500
    template_filename: str = "style_filewords.txt"
    preview_from_txt2img: bool = False
    preview_prompt: str = ""
    preview_negative_prompt: str = ""
    preview_steps: int = 20
    preview_sampler_name: str = "Euler a"
    preview_cfg_scale: float = 7.0
    preview_seed: int = -1
    preview_width: int | None = None  # default: the training size
    preview_height: int | None = None
    # not in the webui's form
    caption_dropout: float = 0.0
    flip: bool = False
    seed: int | None = None


class PngInfoRequest(Lenient):
    image: str = ""
