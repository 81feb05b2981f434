"""The webui's request fields turned into `hypernet.request` settings: img2img and
inpainting (`Img2Img`), the hires fix (`HiresFix`). Every refusal names the webui field
(`denoising_strength`, `init_images[0]`, `hr_upscaler`, ...) and says what would be right.
"""

from __future__ import annotations

import math

from ..errors import HypernetError
from ..request import LATENT_UPSCALERS, MASKED_CONTENT, PIXEL_UPSCALERS, HiresFix, Img2Img
from .api_results import decode_image, schedule_name

RESIZE_MODES = ("just resize", "crop and resize", "resize and fill")  # the webui's codes 0-2
SAME = ("", "Use same sampler", "Use same scheduler")  # the webui's "as the first pass"


def upscaler_names() -> list[str]:
    return [*LATENT_UPSCALERS, *PIXEL_UPSCALERS]


def _strength(field: str, value) -> float:
    if value is None or not math.isfinite(value) or not 0 <= value <= 1:
        raise HypernetError(f"{field} must be between 0 and 1 (got {value})")
    return float(value)


def hires_settings(body) -> HiresFix | None:
    """`Request.hires` from txt2img's `enable_hr` and `hr_*` fields (None without enable_hr)."""
    if not body.enable_hr:
        return None
    problems = []
    upscaler = body.hr_upscaler or "Latent"
    known = {name.lower(): name for name in upscaler_names()}
    if upscaler.lower() not in known:
        problems.append(f"hr_upscaler {upscaler!r} is not available here (the webui's model upscalers such as "
                        f"ESRGAN or SwinIR are not built in); available: {', '.join(upscaler_names())}")
    else:
        upscaler = known[upscaler.lower()]
    if not math.isfinite(body.hr_scale) or (body.hr_scale < 1 and not (body.hr_resize_x or body.hr_resize_y)):
        problems.append(f"hr_scale must be at least 1 (got {body.hr_scale})")
    if body.hr_second_pass_steps < 0:
        problems.append(f"hr_second_pass_steps must be 0 (as steps) or more (got {body.hr_second_pass_steps})")
    for field in ("hr_resize_x", "hr_resize_y"):
        if getattr(body, field) < 0:
            problems.append(f"{field} must be 0 (from hr_scale) or more (got {getattr(body, field)})")
    strength = 0.7 if body.denoising_strength is None else body.denoising_strength
    try:
        strength = _strength("denoising_strength", strength)
    except HypernetError as error:
        problems.append(str(error))
    if body.hr_cfg is not None and not math.isfinite(body.hr_cfg):
        problems.append(f"hr_cfg must be a finite number (got {body.hr_cfg})")
    sampler = None if body.hr_sampler_name in (None, *SAME) else body.hr_sampler_name
    try:
        label = None if body.hr_scheduler in (None, *SAME) else schedule_name(body.hr_scheduler)
    except HypernetError as error:
        problems.append(f"hr_scheduler: {error}")
        label = None
    if label is not None:  # the hires sampler's name carries its schedule ("DPM++ 2M Karras")
        sampler = f"{sampler or body.sampler_name or body.sampler_index} {label}"
    if sampler is not None:
        from ..samplers import split_name

        try:
            split_name(sampler)
        except HypernetError as error:
            problems.append(f"hr_sampler_name: {error}")
    if problems:
        raise HypernetError("; ".join(problems))
    return HiresFix(scale=float(body.hr_scale), upscaler=upscaler, steps=body.hr_second_pass_steps,
                    denoising_strength=strength, resize_width=body.hr_resize_x, resize_height=body.hr_resize_y,
                    prompt=body.hr_prompt or "", negative_prompt=body.hr_negative_prompt or "", sampler=sampler,
                    cfg_scale=body.hr_cfg)


def img2img_settings(body) -> tuple[Img2Img, list[str]]:
    """`Request.img2img` from the webui's img2img fields, and warnings for what was
    accepted but not used as sent."""
    warnings = []
    if not body.init_images:
        raise HypernetError("init_images must hold at least one picture (base64 PNG, JPEG or WebP)")
    image = _picture(body.init_images[0], "init_images[0]")
    if len(body.init_images) > 1:
        warnings.append(f"init_images holds {len(body.init_images)} pictures: only the first is used "
                        "(the webui uses them in turn per image of the batch)")
    problems = []
    try:
        strength = _strength("denoising_strength", body.denoising_strength)
    except HypernetError as error:
        problems.append(str(error))
        strength = None
    if body.resize_mode == 3:
        problems.append("resize_mode 3 (just resize (latent upscale)) is not supported; use 0 (just resize), "
                        "1 (crop and resize) or 2 (resize and fill)")
    elif body.resize_mode not in (0, 1, 2):
        problems.append(f"resize_mode must be 0 (just resize), 1 (crop and resize) or 2 (resize and fill) "
                        f"(got {body.resize_mode})")
    if body.inpainting_fill not in range(len(MASKED_CONTENT)):
        valid = ", ".join(f"{code} ({name})" for code, name in enumerate(MASKED_CONTENT))
        problems.append(f"inpainting_fill must be one of {valid} (got {body.inpainting_fill})")
    if body.inpainting_mask_invert not in (0, 1):
        problems.append(f"inpainting_mask_invert must be 0 (inpaint masked) or 1 (inpaint not masked) "
                        f"(got {body.inpainting_mask_invert})")
    if body.inpaint_full_res_padding < 0:
        problems.append(f"inpaint_full_res_padding must be 0 or more (got {body.inpaint_full_res_padding})")
    blur_x, blur_y = (body.mask_blur, body.mask_blur) if body.mask_blur is not None else (body.mask_blur_x,
                                                                                           body.mask_blur_y)
    for field, value in (("mask_blur" if body.mask_blur is not None else "mask_blur_x", blur_x), ("mask_blur_y", blur_y)):
        if value < 0:
            problems.append(f"{field} must be 0 or more (got {value})")
    if problems:
        raise HypernetError("; ".join(problems))
    blur = max(blur_x, blur_y)
    if blur_x != blur_y:
        warnings.append(f"mask_blur_x {blur_x} and mask_blur_y {blur_y} differ: both directions were blurred by {blur}")
    mask = None
    if body.mask:
        mask = _picture(body.mask, "mask")
        if body.inpaint_full_res:
            _check_mask_not_empty(mask, body.inpainting_mask_invert == 1)
    settings = Img2Img(image, denoising_strength=strength, resize_mode=RESIZE_MODES[body.resize_mode], mask=mask,
                       mask_blur=blur, masked_content=MASKED_CONTENT[body.inpainting_fill],
                       only_masked=bool(body.inpaint_full_res), only_masked_padding=body.inpaint_full_res_padding,
                       invert_mask=body.inpainting_mask_invert == 1)
    return settings, warnings


def _picture(data: str, field: str):
    """A decoded, fully read picture; a broken one is refused naming `field`."""
    if not isinstance(data, str) or not data.strip():
        raise HypernetError(f"{field} is empty: send a base64 PNG, JPEG or WebP picture")
    image = decode_image(data, field)
    try:
        image.load()
    except (OSError, ValueError) as error:
        raise HypernetError(f"{field} is not a readable image (truncated or damaged): {error}") from None
    return image


def _check_mask_not_empty(mask, invert: bool) -> None:
    """"Only masked" (inpaint_full_res) works on the box around the mask: none, no box."""
    from ..img2img_images import prepare_mask

    prepared = prepare_mask(mask, mask.width, mask.height, blur=0, invert=invert)
    if prepared.getbbox() is None:
        raise HypernetError("mask is empty (nothing painted" + (", inverted" if invert else "") + "): with "
                            "inpaint_full_res (only masked) there is nothing to inpaint; paint the area to change, "
                            "or send no mask")
