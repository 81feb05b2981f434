"""The infotext fields of one generated picture, by the webui's names and in its order
(txt2img, img2img and inpainting, the hires fix)."""

from __future__ import annotations

from .samplers import split_name


def parameters(request, seed: int, position: int, steps_done: int, model, clip_skip: int, labels) -> dict:
    """The `parameters` of one picture of `request` (validated) made with `model`."""
    sampler, schedule = split_name(request.sampler, request.schedule)
    fields = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": schedule,
        "CFG scale": request.cfg_scale,
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": model.hash,
        "Model": model.name,
    }
    fields.update(img2img_fields(request))
    if request.batch_size > 1:
        fields["Batch size"] = request.batch_size
        fields["Batch pos"] = position
    if request.subseed_strength > 0:
        fields["Variation seed"] = request.subseed + (seed - request.seed)
        fields["Variation seed strength"] = request.subseed_strength
    if (request.clip_skip or clip_skip) > 1:
        fields["Clip skip"] = request.clip_skip or clip_skip
    if steps_done < request.steps:
        fields["Interrupted at step"] = steps_done
    if labels:
        fields["Hypernetworks"] = ", ".join(f"{name}: {multiplier:g}" for name, multiplier in labels)
    return {key: value for key, value in fields.items() if value is not None}


def img2img_fields(request) -> dict:
    """The webui's infotext fields for img2img/inpainting and the hires fix."""
    fields = {}
    settings = request.img2img
    if settings is not None:
        fields["Denoising strength"] = settings.denoising_strength
        if str(settings.resize_mode).lower() not in ("just resize", "0"):
            fields["Resize mode"] = settings.resize_mode
        if settings.mask is not None:
            fields["Mask blur"] = settings.mask_blur
            fields["Masked content"] = settings.masked_content
            if settings.invert_mask:
                fields["Mask mode"] = "Inpaint not masked"
            if settings.only_masked:
                fields["Inpaint area"] = "Only masked"
                fields["Masked area padding"] = settings.only_masked_padding
    hires = request.hires
    if hires is not None:
        fields["Denoising strength"] = hires.denoising_strength
        if hires.resize_width or hires.resize_height:
            fields["Hires resize"] = f"{hires.resize_width}x{hires.resize_height}"
        else:
            fields["Hires upscale"] = hires.scale
        if hires.steps:
            fields["Hires steps"] = hires.steps
        fields["Hires upscaler"] = hires.upscaler
        if hires.prompt and hires.prompt != request.prompt:
            fields["Hires prompt"] = hires.prompt
        if hires.negative_prompt and hires.negative_prompt != request.negative_prompt:
            fields["Hires negative prompt"] = hires.negative_prompt
        if hires.sampler:
            fields["Hires sampler"], fields["Hires schedule type"] = split_name(hires.sampler)
        if hires.cfg_scale is not None:
            fields["Hires CFG Scale"] = hires.cfg_scale
    return fields
