"""Answers of the webui-compatible API, shaped as webui v1.10.1 shapes them."""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from pathlib import Path

from .. import __version__
from ..errors import HypernetError
from ..samplers import SAMPLERS, SCHEDULES

# the webui's scheduler ids for the schedule types hypernet has
SCHEDULER_IDS = {"automatic": "Automatic", "karras": "Karras", "exponential": "Exponential"}
MAX_PNG_INFO_PIXELS = 64 * 1024 * 1024


def schedule_name(value: str | None) -> str | None:
    """A webui scheduler id or label ("karras", "Karras") as our schedule type."""
    if value in (None, ""):
        return None
    for identifier, label in SCHEDULER_IDS.items():
        if value.lower() in (identifier, label.lower()):
            return None if label == "Automatic" else label
    valid = ", ".join(SCHEDULER_IDS)
    raise HypernetError(f"unknown scheduler {value!r}; valid: {valid}")


def encode_png(image, infotext: str | None = None) -> str:
    from ..infotext import png_bytes

    return base64.b64encode(png_bytes(image, infotext)).decode("ascii")


def decode_image(data: str, field: str = "image"):
    """A PIL image from base64 (a `data:` URL prefix is allowed); clear errors."""
    from PIL import Image, UnidentifiedImageError

    text = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as error:
        raise HypernetError(f"{field} is not valid base64 ({error})") from None
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
    except (UnidentifiedImageError, OSError) as error:
        raise HypernetError(f"{field} is not a readable image (PNG, JPEG or WebP expected): {error}") from None
    except Image.DecompressionBombError:  # PIL's own bound, above ours: was answered 500
        raise HypernetError(f"{field} has more pixels than the server reads ({MAX_PNG_INFO_PIXELS})") from None
    if width * height > MAX_PNG_INFO_PIXELS:
        raise HypernetError(f"{field} is {width}x{height}, more pixels than the server reads ({MAX_PNG_INFO_PIXELS})")
    return image


def generation_response(body, generation, send_images: bool = True) -> dict:
    """The webui's answer to txt2img and img2img: images, parameters, info (a JSON string)."""
    request, found = generation.request, generation.results
    denoising = None
    if request.img2img is not None:
        denoising = request.img2img.denoising_strength
    elif request.hires is not None:
        denoising = request.hires.denoising_strength
    seeds = [r.seed for r in found] or [request.seed]
    info = {
        "prompt": request.prompt,
        "all_prompts": [r.prompt for r in found] or [request.prompt],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [r.negative_prompt for r in found] or [request.negative_prompt],
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": found[0].subseed if found and found[0].subseed is not None else body.subseed,
        "all_subseeds": [r.subseed if r.subseed is not None else r.seed for r in found] or [body.subseed],
        "subseed_strength": request.subseed_strength,
        "width": found[0].parameters["Size"].split("x")[0] if found else request.width,
        "height": found[0].parameters["Size"].split("x")[1] if found else request.height,
        "sampler_name": found[0].parameters["Sampler"] if found else request.sampler,
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": generation.model,
        "sd_model_hash": generation.model_hash,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": denoising,
        "extra_generation_params": _extra_parameters(found[0].parameters) if found else {},
        "index_of_first_image": 0,
        "infotexts": [r.infotext for r in found],
        "styles": list(body.styles or []),
        "job_timestamp": "",
        "clip_skip": request.clip_skip or 1,
        "is_using_inpainting_conditioning": generation.inpainting_model,
        "version": f"hypernet {__version__}",
        "interrupted": generation.interrupted,
        "warnings": generation.warnings,
        "saved": [str(path) for path in generation.saved],
    }
    for key in ("width", "height"):
        if isinstance(info[key], str) and info[key].isdigit():
            info[key] = int(info[key])
    if generation.interrupted:
        unfinished = sum(1 for r in found if not r.finished)
        info["warnings"].append(f"interrupted: {len(found)} images returned, {unfinished} of them unfinished")
    images = [encode_png(r.image, r.infotext) for r in found] if send_images else []
    parameters = body.model_dump(exclude=set(body.model_extra or {}))
    if "init_images" in parameters and not parameters.get("include_init_images"):
        parameters.update(init_images=None, mask=None)  # as the webui: not sent back unless asked
    return {"images": images, "parameters": parameters, "info": json.dumps(info, ensure_ascii=False)}


txt2img_response = generation_response  # its first name


def _extra_parameters(parameters: dict) -> dict:
    standard = {"Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "Batch size", "Batch pos"}
    return {key: value for key, value in parameters.items() if key not in standard}


def progress_response(state, current_image: str | None, now: float) -> dict:
    progress = state.progress
    elapsed = max(0.0, now - state.started) if state.started else 0.0
    eta = (elapsed / progress - elapsed) if progress > 0 else 0.0
    return {
        "progress": progress,
        "eta_relative": eta,
        "state": {
            "skipped": state.skipped,
            "interrupted": state.interrupted,
            "stopping_generation": False,
            "job": state.job,
            "job_count": state.job_count,
            "job_timestamp": state.job_timestamp,
            "job_no": state.job_no,
            "sampling_step": state.sampling_step,
            "sampling_steps": state.sampling_steps,
        },
        "current_image": current_image,
        "textinfo": state.textinfo,
        "current_task": state.job_id or None,
    }


def training_config(body):
    from ..training.config import PreviewOptions, TrainingConfig

    preview = PreviewOptions()
    if body.preview_from_txt2img:
        preview = PreviewOptions(prompt=body.preview_prompt or None, negative_prompt=body.preview_negative_prompt,
                                 steps=body.preview_steps, sampler=body.preview_sampler_name,
                                 cfg_scale=body.preview_cfg_scale,
                                 seed=None if body.preview_seed is None or body.preview_seed < 0 else body.preview_seed,
                                 width=body.preview_width, height=body.preview_height)
    return TrainingConfig(
        data=body.data_root, learning_rate=body.learn_rate, batch_size=body.batch_size,
        gradient_accumulation=body.gradient_step, max_steps=body.steps, width=body.training_width,
        height=body.training_height, resize="keep" if body.varsize else "stretch", flip=body.flip,
        template=body.template_filename, shuffle_tags=body.shuffle_tags, tag_dropout=body.tag_drop_out,
        caption_dropout=body.caption_dropout, latent_sampling=body.latent_sampling_method,
        clip_grad=body.clip_grad_mode, clip_value=body.clip_grad_value, use_alpha_weight=body.use_weight,
        save_every=body.save_hypernetwork_every, preview_every=body.create_image_every, preview=preview,
        log_dir=body.log_directory, seed=body.seed,
    )


def training_info(result) -> str:
    """The webui's answer, labelled right ("train hypernetwork", not "train embedding")."""
    error = None if result.stop_reason in ("finished", "already finished", "interrupted") else result.stop_reason
    return (f"train hypernetwork {'complete' if result.stop_reason == 'finished' else result.stop_reason}: "
            f"filename: {result.output} error: {error}; steps {result.start_step} -> {result.steps_done}"
            + (f", last loss {result.last_loss:.7f}" if result.last_loss is not None else ""))


def checkpoint_entry(service, checkpoint) -> dict:
    loaded = service.loaded_model == checkpoint and service._generator is not None
    short = service._generator.model.hash if loaded else None
    full = service.checkpoints.sha256(checkpoint)
    title = f"{checkpoint.title} [{short}]" if short else checkpoint.title
    return {"title": title, "model_name": checkpoint.model_name, "hash": short, "sha256": full,
            "filename": str(checkpoint.path) if checkpoint.path else "(embedded toy model)", "config": None}


def sampler_list() -> list[dict]:
    return [{"name": name, "aliases": [], "options": {}} for name in SAMPLERS]


def scheduler_list() -> list[dict]:
    return [{"name": identifier, "label": label, "aliases": None, "default_rho": -1, "need_inner_model": False}
            for identifier, label in SCHEDULER_IDS.items() if label in SCHEDULES]


def upscaler_list() -> list[dict]:
    """The webui's `/upscalers`: the pixel upscalers (PIL resampling here, no models)."""
    from ..request import PIXEL_UPSCALERS

    return [{"name": name, "model_name": None, "model_path": None, "model_url": None,
             "scale": 4} for name in PIXEL_UPSCALERS]


def latent_upscale_mode_list() -> list[dict]:
    from ..request import LATENT_UPSCALERS

    return [{"name": name} for name in LATENT_UPSCALERS]


def png_info(data: str) -> dict:
    from ..infotext import PARAMETERS_KEY, parse_infotext

    if not data.strip():
        return {"info": "", "items": {}, "parameters": {}}
    image = decode_image(data)
    texts = {str(key): value for key, value in image.info.items() if isinstance(value, str)}
    info = texts.pop(PARAMETERS_KEY, "")
    parameters = {}
    if info:
        prompt, negative, fields = parse_infotext(info)
        parameters = {"Prompt": prompt, "Negative prompt": negative, **fields}
    return {"info": info, "items": texts, "parameters": parameters}


def lora_list(folder) -> list[dict]:
    from ..extra_networks import LORA_SUFFIXES, _files

    entries = []
    for name, path in _files(Path(folder), LORA_SUFFIXES).items():
        metadata = {}
        if path.suffix == ".safetensors":
            try:
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as handle:
                    metadata = handle.metadata() or {}
            except Exception:  # noqa: BLE001 - a broken file still lists, without metadata
                metadata = {}
        entries.append({"name": name, "alias": name, "path": str(path), "metadata": metadata})
    return entries


def embedding_list(service) -> dict:
    from ..extra_networks import load_embeddings

    generator = service._generator
    if generator is None:
        return {"loaded": {}, "skipped": {}}
    width = generator.pipe.text_encoder.config.hidden_size
    found, warnings = load_embeddings(service.paths.embeddings_dir, width)
    loaded = {name: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": int(vectors.shape[-1]),
                     "vectors": int(vectors.shape[0])} for name, vectors in found.items()}
    skipped = {f"skipped {i + 1}": {"reason": text} for i, text in enumerate(warnings)}
    return {"loaded": loaded, "skipped": skipped}


def memory_report() -> dict:
    import torch

    ram = {}
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        total = int(fields["MemTotal"].split()[0]) * 1024
        free = int(fields["MemAvailable"].split()[0]) * 1024
        ram = {"free": free, "used": total - free, "total": total}
    except (OSError, KeyError, ValueError):
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        ram = {"total": pages * size}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        cuda = {"system": {"free": free, "used": total - free, "total": total},
                "active": {"current": torch.cuda.memory_allocated(), "peak": torch.cuda.max_memory_allocated()}}
    else:
        cuda = {"error": "CUDA is not available"}
    return {"ram": ram, "cuda": cuda}
